#!/usr/bin/env python3
"""Inference cost of the feature scores (mahalanobis, relative_mahalanobis, knn, layer_mahalanobis),
side by side.

At the VOC shape (20 classes, 1024-d box features, queues of 1000 vectors per class, full), one
predictor call is ``VOSOutputLayers.forward`` + ``inference`` on 1000 proposals of one image
(what Detectron2 gives at test time), keeping 100 detections. The call is timed in alternation
with the default scores (vos, energy, msp, max_logit) and with the three feature scores added,
the factorisations cached (warm). Also printed: each feature score alone on the 100 detections,
the one-off cost of building the cached statistics after the queues change, and, for scale, the
standard FPN box head (2 FC layers of 1024 on 256 x 7 x 7 pooled features) on the 1000 proposals.
``layer_mahalanobis`` on the FPN levels p2-p5 (256 channels each, queues of 1000 per class) is
timed with its ROI pooling of the 100 detections from the levels' maps of an 800 x 1067 image.

    python benchmarks/bench_feature_scores.py [--repeats 30] [--threads 1]
"""

import argparse
import statistics
import time
from typing import Callable, Dict, Sequence, Tuple

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_box_head
from detectron2.structures import Boxes, Instances

import vos_det
from vos_det.core.feature_statistics import GaussianFeatureStatistics, NormalizedFeatureBank
from vos_det.modeling import VOSOutputLayers
from vos_det.modeling.layer_features import LayerFeatures
from vos_det.core.scores import ScoreInputs, compute_scores

NUM_CLASSES, FEATURE_DIM, QUEUE_SIZE, NUM_PROPOSALS = 20, 1024, 1000, 1000
IMAGE_SIZE = (800, 1067)
FEATURE_SCORES = ("mahalanobis", "relative_mahalanobis", "knn")


def voc_cfg():
    """The shipped base config (FPN box head, Detectron2's test settings: score 0.05, NMS 0.5,
    100 boxes) at the VOC shape, with the default ``VOS.EVAL.SCORES``."""
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(vos_det.model_zoo.get_config_file("Base-VOS-RCNN-FPN.yaml"))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.VOS.QUEUE_SIZE = QUEUE_SIZE
    return cfg


def build_predictor(extra_scores: Sequence[str]) -> VOSOutputLayers:
    """A VOC-shaped VOS predictor with the default scores plus ``extra_scores``."""
    cfg = voc_cfg()
    cfg.VOS.EVAL.SCORES = (*cfg.VOS.EVAL.SCORES, *extra_scores)
    return VOSOutputLayers(cfg, ShapeSpec(channels=FEATURE_DIM)).eval()


def box_features(generator: torch.Generator, labels: torch.Tensor) -> torch.Tensor:
    """ReLU features with a class-dependent mean, as box heads give: (N, FEATURE_DIM)."""
    class_means = torch.randn(NUM_CLASSES, FEATURE_DIM, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(len(labels), FEATURE_DIM, generator=generator)
    return (class_means[labels] + noise).relu()


def image_inputs(generator: torch.Generator) -> Tuple[torch.Tensor, Instances]:
    """1000 proposals of one image: their box features and boxes."""
    labels = torch.randint(0, NUM_CLASSES, (NUM_PROPOSALS,), generator=generator)
    xy = torch.rand(NUM_PROPOSALS, 2, generator=generator) * torch.tensor([900.0, 700.0])
    wh = 20 + torch.rand(NUM_PROPOSALS, 2, generator=generator) * 300
    proposals = Instances(IMAGE_SIZE)
    proposals.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
    return box_features(generator, labels), proposals


def layer_mahalanobis_ms(generator: torch.Generator, boxes: torch.Tensor, repeats: int) -> float:
    """Median time of ``layer_mahalanobis`` on the FPN levels p2-p5 (pooling included) for the
    (R, 4) detected boxes, its queues full and its statistics cached."""
    strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    shapes = {name: ShapeSpec(channels=256, stride=stride) for name, stride in strides.items()}
    layers = LayerFeatures(shapes, list(strides), NUM_CLASSES, QUEUE_SIZE).eval()
    labels = torch.arange(NUM_CLASSES).repeat_interleave(QUEUE_SIZE)
    layers.queues.push(
        {name: torch.randn(len(labels), 256, generator=generator).relu() for name in strides},
        labels,
    )
    maps = {
        name: torch.randn(1, 256, IMAGE_SIZE[0] // s, IMAGE_SIZE[1] // s, generator=generator)
        for name, s in strides.items()
    }

    def score() -> torch.Tensor:
        inputs = ScoreInputs(
            torch.zeros(len(boxes), NUM_CLASSES),
            layer_features=layers(maps, [boxes]),
            layer_queues=layers.queues,
        )
        return compute_scores(["layer_mahalanobis"], inputs)

    score()  # builds the cached statistics
    return median_ms(score, repeats)


def elapsed_ms(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1e3


def median_ms(function: Callable[[], object], repeats: int) -> float:
    return statistics.median(elapsed_ms(function) for _ in range(repeats))


def knn_float64(features: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """The exact k-th neighbour distance in float64, as the scores computed it before: (R,)."""
    unit = torch.nn.functional.normalize(features.double(), dim=1)
    vectors = bank.double()
    squared = unit.square().sum(1, keepdim=True) + vectors.square().sum(1) - 2 * unit @ vectors.mT
    return squared.topk(k, dim=1, largest=False).values[:, -1].clamp(min=0).sqrt()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    predictors: Dict[str, VOSOutputLayers] = {
        "default scores": build_predictor(()),
        "+ feature scores": build_predictor(FEATURE_SCORES),
    }
    baseline, featured = predictors.values()
    labels = torch.arange(NUM_CLASSES).repeat_interleave(QUEUE_SIZE)
    baseline.queues.push(box_features(generator, labels), labels)
    with torch.no_grad():  # peaked class probabilities, so that NMS keeps 100 boxes
        baseline.cls_score.weight.normal_(0.0, 0.1, generator=generator)
    featured.load_state_dict(baseline.state_dict())
    features, proposals = image_inputs(generator)

    def call(predictor: VOSOutputLayers):
        return predictor.inference(predictor(features), [proposals], features)

    with torch.no_grad():
        (detections,), (kept,) = call(featured)  # also builds the cached statistics
        times = {name: [] for name in predictors}
        for _ in range(args.repeats):
            for name, predictor in predictors.items():
                times[name].append(elapsed_ms(lambda: call(predictor)))
        inputs = ScoreInputs(
            detections.fg_logits,
            box_features=features[kept],
            queues=featured.queues,
            knn_k=featured.knn_k,
        )
        alone = {
            name: median_ms(lambda: compute_scores([name], inputs), args.repeats)
            for name in FEATURE_SCORES
        }
        bank = NormalizedFeatureBank(featured.queues)
        reference_ms = median_ms(
            lambda: knn_float64(features[kept], bank.vectors, featured.knn_k), args.repeats
        )
        gap = (
            (
                bank.kth_neighbour_distance(features[kept], featured.knn_k)
                - knn_float64(features[kept], bank.vectors, featured.knn_k)
            )
            .abs()
            .max()
        )
        alone["layer_mahalanobis (p2-p5, pooling incl.)"] = layer_mahalanobis_ms(
            generator, detections.pred_boxes.tensor, args.repeats
        )
        box_head = build_box_head(voc_cfg(), ShapeSpec(channels=256, height=7, width=7))
        pooled = torch.randn(NUM_PROPOSALS, 256, 7, 7, generator=generator)
        head_ms = median_ms(lambda: box_head(pooled), 5)
        builds = {
            cls.__name__: median_ms(lambda: cls(featured.queues), 3)
            for cls in (GaussianFeatureStatistics, NormalizedFeatureBank)
        }
    calls = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"VOC shape: {NUM_CLASSES} classes, {FEATURE_DIM}-d, queues {QUEUE_SIZE} per class (full), "
        f"{NUM_PROPOSALS} proposals -> {len(detections)} detections; {torch.get_num_threads()} "
        f"torch thread(s); median of {args.repeats} calls in alternation"
    )
    for name, value in calls.items():
        print(f"  predictor call, {name:<18} {value:9.2f} ms")
    overhead = calls["+ feature scores"] / calls["default scores"] - 1
    print(f"  feature scores overhead        {100 * overhead:9.1f} %  (target <= 10 %)")
    print("each feature score alone on the detections (cached statistics):")
    for name, value in alone.items():
        share = 100 * value / calls["default scores"]
        print(f"  {name:<38} {value:9.2f} ms  ({share:5.1f} % of a predictor call)")
    print(
        f"  knn's float64 reference (before)   {reference_ms:9.2f} ms; largest distance gap to "
        f"the float32 search {float(gap):.1e}"
    )
    print(f"for scale: the FPN box head on the proposals   {head_ms:9.2f} ms")
    print("one-off cost of the cache, rebuilt after the queues change:")
    for name, value in builds.items():
        print(f"  {name:<28}   {value:9.2f} ms")


if __name__ == "__main__":
    main()
