#!/usr/bin/env python3
"""Do ROI-pooled backbone layers tell unseen shapes apart, alone or combined (SAFE-style)?

Evaluates one trained run of the synthetic benchmark (a ``tools/benchmark.py`` run folder, on
its own data draw) with the layer scores of ``VOS.LAYER_FEATURES``: the statistics of every
layer are fitted post hoc on the ground-truth boxes of the training set (all of them), the
backbone is read through ``build_resnet_fpn_stages_backbone`` (the same weights), and FPR95 /
AUROC on the run's OOD set are printed for each single layer (``layer_mahalanobis_<layer>``)
and for each combination of ``--combine`` (``layer_mahalanobis``: the sum of the layers'
standardised distances), next to the box-feature ``mahalanobis`` fitted the same way. Tune on
a validation draw (a run of ``tools/benchmark.py --data-seed 1``), not on the test draw::

    python benchmarks/layer_feature_choice.py output/benchmark_val/runs/vanilla/seed1 \\
        --data-seed 1 --combine res2,res3,res4,res5 p2,p3,p4,p5
"""

import argparse
from typing import List, Sequence

import torch

from class_statistics_choice import evaluate
from vos_det.core.scores import LAYER_NAMES
from vos_det.data.synthetic_draws import add_draw_arguments, synthetic_benchmark_setup
from vos_det.engine.fit_statistics import ALL_BOXES

STAGES_BACKBONE = ["MODEL.BACKBONE.NAME", "build_resnet_fpn_stages_backbone"]


def layer_rows(run: str, layers: Sequence[str], per_layer: bool) -> List[str]:
    """Table rows of one evaluation pooling ``layers``: the combined score, the box-feature
    Mahalanobis score and (with ``per_layer``) every single layer's score."""
    scores = ["layer_mahalanobis", "mahalanobis"]
    if per_layer:
        scores += [f"layer_mahalanobis_{layer}" for layer in layers]
    overrides = STAGES_BACKBONE + ["VOS.LAYER_FEATURES.IN_FEATURES", str(list(layers))]
    results = evaluate(run, overrides, tuple(scores), ALL_BOXES)
    label = "+".join(layers)
    return [
        f"| {label} | {name} | {metrics['FPR95']:.2f} | {metrics['AUROC']:.2f} |"
        for name, metrics in results.items()
        if per_layer or name == "layer_mahalanobis"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a run folder (config.yaml, model_final.pth)")
    parser.add_argument(
        "--layers",
        default=",".join(LAYER_NAMES),
        help="the layers scored one by one (and combined), comma-separated",
    )
    parser.add_argument(
        "--combine", nargs="*", default=[], help="more layer combinations, each comma-separated"
    )
    parser.add_argument("--data-seed", type=int, default=0, help="the run's data draw (0: test)")
    add_draw_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    synthetic_benchmark_setup(args.images, args.data_root, args.data_seed)
    print("| layers | score | FPR95 | AUROC |")
    print("|---|---|---|---|")
    for index, group in enumerate([args.layers] + args.combine):
        for row in layer_rows(args.run, group.split(","), per_layer=index == 0):
            print(row, flush=True)


if __name__ == "__main__":
    main()
