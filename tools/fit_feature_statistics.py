#!/usr/bin/env python3
"""Fit the feature scores' class statistics of a trained detector on its training set.

For a model trained without feature queues (a stock Detectron2 Faster R-CNN, or a vanilla model
trained without a feature score configured): the weights are loaded into a ``VOSROIHeads``
model of the given config, whose VOS.SCORE or VOS.EVAL.SCORES must name a feature score
(mahalanobis, relative_mahalanobis, knn); the box features of the ground-truth boxes of the
``DATASETS.TRAIN`` images (resized as at test time) fill its feature queues, and the weights plus
the queues are written to ``<output>/<name>.pth``, for ``tools/train_net.py --eval-only`` and
``tools/demo.py`` with the same config and overrides (the feature scores among them)::

    python tools/fit_feature_statistics.py \\
        --config-file configs/VOC-Detection/vanilla_R_50_FPN.yaml \\
        --output output/vanilla_fitted MODEL.WEIGHTS model_final.pth \\
        VOS.EVAL.SCORES "('energy', 'mahalanobis', 'relative_mahalanobis', 'knn')"

A class with more boxes than VOS.QUEUE_SIZE keeps the last ones. Exit status 2 for a usage error
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

from vos_det.config import load_vos_config
from vos_det.engine.checkpoint import AtomicCheckpointer
from vos_det.engine.fit_statistics import (
    build_statistics_loader,
    feature_queues,
    fit_feature_statistics,
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
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


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
        data_loader = build_statistics_loader(cfg, args.max_images)
        model = build_model(cfg)
        feature_queues(model)
        load_fitting_weights(model, cfg.MODEL.WEIGHTS)
    except (FileNotFoundError, KeyError, ValueError) as error:
        parser.error(error.args[0] if isinstance(error, KeyError) and error.args else str(error))
    setup_vos_logger(cfg.OUTPUT_DIR, rank=0)
    pushed = fit_feature_statistics(model, data_loader)
    kept = feature_queues(model).fill_counts()
    logger.info(
        "Ground-truth boxes per class: %s pushed, %s kept (VOS.QUEUE_SIZE %d).",
        pushed.tolist(),
        kept.tolist(),
        cfg.VOS.QUEUE_SIZE,
    )
    AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).save(name)
    path = os.path.join(cfg.OUTPUT_DIR, f"{name}.pth")
    logger.info("Wrote %s: evaluate it with this config and MODEL.WEIGHTS %s", path, path)
    return path


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("fit_feature_statistics.py: interrupted; no checkpoint was written.")
