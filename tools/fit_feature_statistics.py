#!/usr/bin/env python3
"""Fit the feature scores' class statistics of a trained detector on its training set.

For a model trained without feature queues (a stock Detectron2 Faster R-CNN, or a vanilla model
trained without a feature score configured): the weights are loaded into a ``VOSROIHeads``
model of the given config, whose VOS.SCORE or VOS.EVAL.SCORES must name a feature score
(mahalanobis, relative_mahalanobis, knn, the crop or the layer scores); the features of the
ground-truth boxes of the ``DATASETS.TRAIN`` images (resized as at test time) fill the queues
those scores read (box features, box crops, pooled layers), and the weights plus
the queues are written to
``<output>/<name>.pth``, with ``<output>/config.yaml``: the config to evaluate it with
(``tools/train_net.py --config-file <output>/config.yaml --eval-only``, ``tools/demo.py``)::

    python tools/fit_feature_statistics.py \\
        --config-file configs/VOC-Detection/vanilla_R_50_FPN.yaml \\
        --output output/vanilla_fitted --boxes-per-class all MODEL.WEIGHTS model_final.pth \\
        VOS.EVAL.SCORES "('energy', 'mahalanobis', 'relative_mahalanobis', 'knn')"

By default the queues keep VOS.QUEUE_SIZE (VOS.CROP_FEATURES.QUEUE_SIZE,
VOS.LAYER_FEATURES.QUEUE_SIZE) boxes per class, a class
with more keeping its last ones. ``--boxes-per-class N`` keeps N per class instead, and
``--boxes-per-class all`` every ground-truth box (the queues hold as many as the largest class
has); ``<output>/config.yaml`` then sets the queue sizes to match. Exit status 2 for a usage error
(weights not found, no training set, a class with fewer than 2 boxes, no feature score
configured), with its message.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional

import vos_det  # noqa: F401  first: silences known warnings; registers heads and datasets
from detectron2.modeling import build_model

from detectron2.config import CfgNode

from vos_det.config import load_vos_config
from vos_det.core.files import atomic_write
from vos_det.engine.checkpoint import AtomicCheckpointer
from vos_det.engine.fit_statistics import (
    ALL_BOXES,
    build_statistics_loader,
    fitted_queues,
    fit_feature_statistics,
    queue_capacity,
    statistics_dataset_dicts,
)
from vos_det.utils.logger import setup_vos_logger
from vos_det.utils.weights import check_weights, load_fitting_weights

logger = logging.getLogger("vos_det")

DEFAULT_NAME = "model_with_statistics"


def build_parser() -> argparse.ArgumentParser:
    """Returns: the command-line parser (config, output, name, image limit, overrides)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config YAML")
    parser.add_argument(
        "--output", required=True, help="folder for the checkpoint and log.txt (OUTPUT_DIR)"
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"checkpoint file name, without .pth (default: {DEFAULT_NAME})",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N training images (default: all)",
    )
    parser.add_argument(
        "--boxes-per-class",
        type=boxes_per_class_argument,
        default=None,
        metavar="N|all",
        help="ground-truth boxes kept per class: a number >= 2, or 'all' (default: the "
        "config's VOS.QUEUE_SIZE and VOS.CROP_FEATURES.QUEUE_SIZE)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


def boxes_per_class_argument(text: str) -> int:
    """``--boxes-per-class``: "all" (returned as ``ALL_BOXES``) or an integer >= 2."""
    if text == "all":
        return ALL_BOXES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither 'all' nor a number of boxes >= 2 (a class Gaussian needs 2)"
        )
    return value


def evaluation_config(cfg: CfgNode, weights: str, capacity: Optional[int]) -> CfgNode:
    """The config that loads the fitted checkpoint: ``cfg`` with ``MODEL.WEIGHTS`` and, when the
    queues were resized, both queue sizes set to ``capacity``."""
    evaluation = cfg.clone()
    evaluation.defrost()
    evaluation.MODEL.WEIGHTS = weights
    if capacity:
        evaluation.VOS.QUEUE_SIZE = capacity
        evaluation.VOS.CROP_FEATURES.QUEUE_SIZE = capacity
        evaluation.VOS.LAYER_FEATURES.QUEUE_SIZE = capacity
        evaluation.VOS.MIN_QUEUE_FILL = min(evaluation.VOS.MIN_QUEUE_FILL, capacity)
    return evaluation


def main(argv: Optional[List[str]] = None) -> str:
    """Fit the statistics and write the checkpoint; returns its path.

    Raises:
        SystemExit: status 2 with the message for a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    name = args.name[: -len(".pth")] if args.name.endswith(".pth") else args.name
    try:
        cfg = load_vos_config(args.config_file, args.opts, args.output)
        check_weights(cfg.MODEL.WEIGHTS)
        dicts = statistics_dataset_dicts(cfg, args.max_images)
        capacity = queue_capacity(dicts, cfg.MODEL.ROI_HEADS.NUM_CLASSES, args.boxes_per_class)
        data_loader = build_statistics_loader(cfg, dicts)
        model = build_model(cfg)
        fitted_queues(model)
        load_fitting_weights(model, cfg.MODEL.WEIGHTS)
    except (FileNotFoundError, KeyError, ValueError) as error:
        parser.error(error.args[0] if isinstance(error, KeyError) and error.args else str(error))
    setup_vos_logger(cfg.OUTPUT_DIR, rank=0)
    pushed = fit_feature_statistics(model, data_loader, capacity)
    for label, queues in fitted_queues(model).items():
        logger.info(
            "%s: ground-truth boxes per class %s pushed, %s kept (%d per class at most).",
            label,
            pushed.tolist(),
            queues.fill_counts().tolist(),
            queues.capacity,
        )
    AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).save(name)
    path = os.path.join(cfg.OUTPUT_DIR, f"{name}.pth")
    config = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    with atomic_write(config) as f:
        f.write(evaluation_config(cfg, path, capacity).dump())
    logger.info(
        "Wrote %s and its config %s: evaluate with tools/train_net.py --config-file %s "
        "--eval-only",
        path,
        config,
        config,
    )
    return path


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("fit_feature_statistics.py: interrupted; no checkpoint was written.")
