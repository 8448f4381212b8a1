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
import sys
from typing import List, Optional

import vos_det  # noqa: F401  first: it silences known warnings of the imports below
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm

from vos_det.config import load_vos_config
from vos_det.engine import VOSTrainer
from vos_det.engine.preflight import check_datasets
from vos_det.modeling.detection_scores import check_score_statistics
from vos_det.utils.logger import setup_vos_logger
from vos_det.utils.weights import check_weights, load_fitting_weights

logger = logging.getLogger("vos_det")


def build_config(args: argparse.Namespace) -> CfgNode:
    """The frozen config of ``--config-file`` and the ``KEY VALUE`` overrides
    (:func:`~vos_det.config.load_vos_config`)."""
    return load_vos_config(args.config_file, args.opts)


def setup(args: argparse.Namespace) -> CfgNode:
    """``build_config``, then Detectron2's and vos_det's logs (terminal and ``log.txt``)."""
    cfg = build_config(args)
    setup_vos_logger(cfg.OUTPUT_DIR, comm.get_rank())
    default_setup(cfg, args)
    return cfg


def eval_only_weights(cfg: CfgNode, resume: bool) -> str:
    """The weights ``--eval-only`` evaluates: with ``--resume`` the last checkpoint of
    ``OUTPUT_DIR`` when there is one, else ``MODEL.WEIGHTS``.

    Raises:
        FileNotFoundError: there are no trained weights to evaluate.
    """
    checkpointer = DetectionCheckpointer(torch.nn.Module(), cfg.OUTPUT_DIR)
    if resume and checkpointer.has_checkpoint():
        return checkpointer.get_checkpoint_file()
    check_weights(cfg.MODEL.WEIGHTS)
    return cfg.MODEL.WEIGHTS


def load_model_to_evaluate(cfg: CfgNode, resume: bool) -> torch.nn.Module:
    """The model ``--eval-only`` evaluates, its weights loaded only if they fit the config and
    hold the statistics of every configured score.

    Raises:
        FileNotFoundError: no trained weights.
        ValueError: weights that do not fit, or lack a score's statistics (named).
    """
    model = VOSTrainer.build_model(cfg)
    load_fitting_weights(model, eval_only_weights(cfg, resume))
    check_score_statistics(model.roi_heads, (cfg.VOS.SCORE, *cfg.VOS.EVAL.SCORES))
    return model


def main(args: argparse.Namespace):
    """Train, or evaluate with ``--eval-only``; returns the evaluation results.

    Raises:
        FileNotFoundError, ValueError: ``--eval-only`` without fitting weights
            (:func:`load_model_to_evaluate`).
    """
    cfg = setup(args)
    if args.eval_only:
        model = load_model_to_evaluate(cfg, args.resume)
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
        ValueError: a config mistake, or ``--eval-only`` weights that do not fit the config or
            lack a score's statistics.
        KeyError: an unregistered dataset.
        FileNotFoundError: a missing config file, dataset file or weights file.
    """
    cfg = build_config(args)
    if args.eval_only:
        try:
            load_model_to_evaluate(cfg, args.resume)
        except (FileNotFoundError, ValueError) as error:
            raise type(error)(f"--eval-only: {error}") from error
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
    try:
        args = parse_checked_args()
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except KeyboardInterrupt:
        sys.exit(
            "train_net.py: interrupted. The checkpoints written so far stay in OUTPUT_DIR "
            "(SOLVER.CHECKPOINT_PERIOD); add --resume to the same command to continue from the "
            "last one."
        )
