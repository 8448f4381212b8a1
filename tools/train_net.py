#!/usr/bin/env python3
"""Train or evaluate a VOS (or vanilla) detector with Detectron2's usual command line.

    python tools/train_net.py --config-file configs/VOC-Detection/vos_R_50_FPN.yaml --num-gpus 8
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model_final.pth
    python tools/train_net.py --config-file ... --resume

Detectron2's and vos_det's logs (the OOD metric tables among them) go to the terminal and to
``OUTPUT_DIR/log.txt``. ``--eval-only`` refuses to run (exit status 2) without trained weights:
``MODEL.WEIGHTS`` must name a local file or a URL, unless ``--resume`` finds a checkpoint in
``OUTPUT_DIR``.
"""

import argparse
import logging
from typing import List, Optional

import vos_det  # first: it silences known warnings of the imports below
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm

from vos_det.engine import VOSTrainer
from vos_det.engine.preflight import check_datasets
from vos_det.utils import check_weights, setup_vos_logger

logger = logging.getLogger("vos_det")


def build_config(args: argparse.Namespace) -> CfgNode:
    """Config from the defaults, VOS keys, ``--config-file`` and ``KEY VALUE`` overrides.

    Args:
        args (Namespace): parsed command line.

    Returns:
        CfgNode: the frozen config.
    """
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    vos_det.validate_vos_config(cfg)
    cfg.freeze()
    return cfg


def setup(args: argparse.Namespace) -> CfgNode:
    """``build_config``, then Detectron2's and vos_det's logs (terminal and ``log.txt``)."""
    cfg = build_config(args)
    setup_vos_logger(cfg.OUTPUT_DIR, comm.get_rank())
    default_setup(cfg, args)
    return cfg


def check_eval_only_weights(cfg: CfgNode, resume: bool) -> None:
    """Raise ``FileNotFoundError`` unless ``--eval-only`` has trained weights to evaluate.

    Args:
        cfg (CfgNode): the config (``MODEL.WEIGHTS``, ``OUTPUT_DIR``).
        resume (bool): ``--resume``: a checkpoint in ``OUTPUT_DIR`` takes the place of
            ``MODEL.WEIGHTS``.
    """
    if resume and DetectionCheckpointer(torch.nn.Module(), cfg.OUTPUT_DIR).has_checkpoint():
        return
    check_weights(cfg.MODEL.WEIGHTS)


def main(args: argparse.Namespace):
    """Train, or evaluate with ``--eval-only``; returns the evaluation results.

    Raises:
        FileNotFoundError: ``--eval-only`` without trained weights (``check_eval_only_weights``).
    """
    cfg = setup(args)
    if args.eval_only:
        check_eval_only_weights(cfg, args.resume)
        model = VOSTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = VOSTrainer.test(cfg, model)
        if comm.is_main_process():
            logger.info("Evaluation results: %s", results)
        return results
    trainer = VOSTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def check_before_launch(args: argparse.Namespace) -> None:
    """Everything that can be checked before any process starts: the config (keys and values),
    with ``--eval-only`` the weights, and the datasets (:func:`check_datasets`).

    Raises:
        AssertionError, KeyError, ValueError: a config mistake (yacs raises the first two).
        FileNotFoundError: a missing config file, dataset file or weights file.
    """
    cfg = build_config(args)
    if args.eval_only:
        try:
            check_eval_only_weights(cfg, args.resume)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--eval-only: {error}") from error
    check_datasets(cfg, training=not args.eval_only)


def parse_checked_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Detectron2's command line, checked by :func:`check_before_launch`; a mistake exits with
    status 2 and its message (no traceback)."""
    parser = default_argument_parser()
    args = parser.parse_args(argv)
    try:
        check_before_launch(args)
    except (AssertionError, FileNotFoundError, KeyError, ValueError) as error:
        parser.error(error.args[0] if isinstance(error, KeyError) and error.args else str(error))
    return args


if __name__ == "__main__":
    args = parse_checked_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
