#!/usr/bin/env python3
"""Where the virtual outliers of a trained model lie, next to its real features.

Loads the class feature queues of a checkpoint (a model trained with VOS or with a feature
score), draws outliers with each synthesis method of :mod:`vos_det.core.outlier_synthesis`, and prints
the Mahalanobis radius (distance to the class mean under the queues' shared covariance) of the
queued real features and of the outliers. Outliers that should teach a head "what is not a known
object" must lie beyond most real features, and not absurdly far.

    python benchmarks/outlier_geometry.py output/benchmark/runs/vos/seed1/model_final.pth
"""

import argparse

import numpy as np
import torch

from vos_det.core.feature_statistics import GaussianFeatureStatistics
from vos_det.core.outlier_synthesis import OutlierSynthesizer
from vos_det.core.queues import ClassFeatureQueues

QUEUES = "roi_heads.box_predictor.queues."


def load_queues(checkpoint: str) -> ClassFeatureQueues:
    """The box predictor's feature queues saved in a Detectron2 checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    if QUEUES + "queue_shape" not in state:
        raise SystemExit(f"{checkpoint} holds no feature queues ({QUEUES}*)")
    num_classes, capacity, dim = state[QUEUES + "queue_shape"].tolist()
    queues = ClassFeatureQueues(num_classes, capacity, dim)
    queues.load_state_dict({k[len(QUEUES) :]: v for k, v in state.items() if k.startswith(QUEUES)})
    return queues


def mahalanobis_radii(
    statistics: GaussianFeatureStatistics, features: torch.Tensor, labels: torch.Tensor
) -> np.ndarray:
    """[N] distances of [N, D] features to their own class means, whitened by the covariance."""
    columns = torch.searchsorted(statistics.ready_classes, labels)
    squared = statistics.class_distances(features)[torch.arange(len(labels)), columns]
    return squared.clamp_min(0).sqrt().numpy()


def describe(name: str, radii: np.ndarray) -> None:
    low, median, high = np.percentile(radii, [5, 50, 95])
    print(f"  {name:<34} median {median:7.1f}   5-95%: {low:.1f}-{high:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a model_final.pth with feature queues")
    parser.add_argument("--per-class", type=int, default=50, help="outliers per class (50)")
    args = parser.parse_args()
    torch.manual_seed(0)
    queues = load_queues(args.checkpoint)
    if bool((queues.counts < 2).any()):
        raise SystemExit(f"every class queue needs 2 features; counts: {queues.counts.tolist()}")
    statistics = GaussianFeatureStatistics(queues)
    classes = torch.ones(queues.num_classes, dtype=torch.bool)
    real = torch.cat([queues.class_features(k) for k in range(queues.num_classes)])
    real_labels = torch.arange(queues.num_classes).repeat_interleave(queues.fill_counts())
    labels = torch.arange(queues.num_classes).repeat_interleave(args.per_class)
    print(f"Mahalanobis radius, {queues.dim}-d features, {queues.num_classes} classes:")
    real_radii = mahalanobis_radii(statistics, real, real_labels)
    describe("real queued features", real_radii)
    for method, candidates in (("gaussian", 10000), ("boundary", 1000)):
        outliers = OutlierSynthesizer(method, candidates, args.per_class)(queues, classes)
        radii = mahalanobis_radii(statistics, outliers, labels)
        describe(f"{method} outliers ({candidates} candidates)", radii)
        print(
            f"    real features beyond their median: {np.mean(real_radii > np.median(radii)):.0%}"
        )


if __name__ == "__main__":
    main()
