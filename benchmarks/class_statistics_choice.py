#!/usr/bin/env python3
"""Which part of the class statistics matters for the Mahalanobis scores: the number of vectors
per class or the covariance's shrinkage?

Evaluates one trained run of the synthetic benchmark (a ``tools/benchmark.py`` run folder, on
its own data draw) with each covariance estimator of ``VOS.FEATURE_STATS.COVARIANCE``, on the
statistics of two sources:

- the queues the run kept in training (``VOS.QUEUE_SIZE`` box features per class from the
  training proposals, ``VOS.CROP_FEATURES.QUEUE_SIZE`` crops of ground-truth boxes);
- post-hoc fits (``tools/fit_feature_statistics.py``) of the ground-truth boxes of the training
  set, ``--boxes-per-class`` each (a number, or ``all``).

and prints FPR95 / AUROC of each Mahalanobis score on the run's OOD set. Tune on a validation
draw (a run of ``tools/benchmark.py --data-seed 1``), not on the test draw::

    python benchmarks/class_statistics_choice.py output/benchmark_val/runs/vanilla/seed1 \\
        --data-seed 1 --boxes-per-class 200 all
"""

import argparse
import contextlib
import io
import os
import tempfile
from typing import Dict, List, Optional

import torch
from detectron2.modeling import build_model

from vos_det.config import load_vos_config
from vos_det.core.covariance import COVARIANCE_ESTIMATORS
from vos_det.data.synthetic_draws import add_draw_arguments, synthetic_benchmark_setup
from vos_det.engine.fit_statistics import (
    ALL_BOXES,
    build_statistics_loader,
    fit_feature_statistics,
    queue_capacity,
    statistics_dataset_dicts,
)
from vos_det.engine.trainer import VOSTrainer
from vos_det.utils.weights import load_fitting_weights

BOX_SCORES = ("mahalanobis", "relative_mahalanobis")
CROP_SCORES = ("crop_mahalanobis",)


def evaluate(
    run: str, overrides: List[str], scores: tuple, boxes_per_class: Optional[int]
) -> Dict[str, dict]:
    """The run's model evaluated with ``overrides`` on the scores ``scores``, its queues first
    refitted post hoc with ``boxes_per_class`` boxes per class (``ALL_BOXES``: all; None: as
    trained).

    Returns:
        dict: score -> {"FPR95", "AUROC"} on the run's OOD set.
    """
    with tempfile.TemporaryDirectory() as output:
        cfg = load_vos_config(
            os.path.join(run, "config.yaml"),
            overrides
            + ["MODEL.WEIGHTS", os.path.join(run, "model_final.pth")]
            + ["VOS.SCORE", scores[0], "VOS.EVAL.SCORES", str(tuple(scores))],
            output,
        )
        model = build_model(cfg)
        load_fitting_weights(model, cfg.MODEL.WEIGHTS)
        if boxes_per_class is not None:
            dicts = statistics_dataset_dicts(cfg)
            capacity = queue_capacity(dicts, cfg.MODEL.ROI_HEADS.NUM_CLASSES, boxes_per_class)
            loader = build_statistics_loader(cfg, dicts)
            fit_feature_statistics(model, loader, capacity, progress=False)
        model.eval()
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # pycocotools' tables
            results = VOSTrainer.test(cfg, model)
    (ood_set,) = [name for name in cfg.DATASETS.TEST[1:]]
    return {name: results[ood_set][name] for name in scores}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a run folder (config.yaml, model_final.pth)")
    parser.add_argument(
        "--boxes-per-class", nargs="*", default=["all"], help="post-hoc fits (numbers or all)"
    )
    parser.add_argument(
        "--estimators", nargs="+", default=list(COVARIANCE_ESTIMATORS), choices=COVARIANCE_ESTIMATORS
    )
    parser.add_argument("--no-crops", action="store_true", help="skip the crop scores")
    parser.add_argument("--data-seed", type=int, default=0, help="the run's data draw (0: test)")
    add_draw_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    synthetic_benchmark_setup(args.images, args.data_root, args.data_seed)
    sources = [("training queues", None)] + [
        (f"fit, {count} boxes per class", ALL_BOXES if count == "all" else int(count))
        for count in args.boxes_per_class
    ]
    print("| statistics | covariance | score | FPR95 | AUROC |")
    print("|---|---|---|---|---|")
    for label, boxes in sources:
        for estimator in args.estimators:
            overrides = ["VOS.FEATURE_STATS.COVARIANCE", estimator]
            groups = [BOX_SCORES] + ([] if args.no_crops or boxes is not None else [CROP_SCORES])
            for scores in groups:
                for name, metrics in evaluate(args.run, overrides, scores, boxes).items():
                    print(
                        f"| {label} | {estimator} | {name} | {metrics['FPR95']:.2f} | "
                        f"{metrics['AUROC']:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
