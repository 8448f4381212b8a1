#!/usr/bin/env python3
"""Training-step cost of VOS and its variants vs the vanilla detector, side by side in one run.

1. The demo's small CPU model (configs/Synthetic: GN ResNet-18 FPN Faster R-CNN, 128x128
   images, batch 4), every method of configs/Synthetic/synthesis_methods.yaml (vanilla, VOS,
   its MLP head, FEVER-OOD, the feature head, boundary synthesis) past START_ITER with full
   queues, timed on the same batches in alternation.
2. The VOS-specific work alone at the VOC shape (20 classes, 1024-d box features, queue 1000,
   10,000 candidates, 256 foreground boxes per step): queue push, statistics, outlier
   synthesis, the outliers' classification and the uncertainty loss with its backward pass.

    python benchmarks/bench_train_step.py [--steps 20]
"""

import argparse
import statistics
import time

import torch

import vos_det  # first: it silences known warnings of the imports below
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from vos_det.experiments.method_grid import Method, build_config, load_methods
from vos_det.modeling import VOSOutputLayers


def small_model(method: Method):
    """The demo's model (configs/Synthetic) of ``method``, built untrained, past START_ITER."""
    overrides = [*method.overrides, "MODEL.DEVICE", "cpu", "VOS.START_ITER", 0]
    cfg = build_config(method.config, overrides, output_dir="")
    torch.manual_seed(0)
    return build_model(cfg).train()


def random_batch(generator: torch.Generator, num_classes: int, size: int = 128, images: int = 4):
    batch = []
    for _ in range(images):
        xy = torch.rand(3, 2, generator=generator) * (size - 50)
        wh = 14 + torch.rand(3, 2, generator=generator) * 34
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        instances.gt_classes = torch.randint(0, num_classes, (3,), generator=generator)
        image = (torch.rand(3, size, size, generator=generator) * 255).to(torch.uint8)
        batch.append({"image": image, "instances": instances, "height": size, "width": size})
    return batch


def fill_queues(queues) -> None:
    """Fill every class queue to capacity with random features."""
    features = torch.rand(queues.num_classes * queues.capacity, queues.dim)
    queues.push(features, torch.arange(queues.num_classes).repeat_interleave(queues.capacity))


def train_step(model, optimizer, batch) -> float:
    start = time.perf_counter()
    losses = model(batch)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    return time.perf_counter() - start


def bench_small_model(steps: int) -> None:
    methods = load_methods(vos_det.model_zoo.get_config_file("Synthetic/synthesis_methods.yaml"))
    models = {name: small_model(method) for name, method in methods.items()}
    for model in models.values():
        queues = model.roi_heads.box_predictor.queues
        if queues is not None:
            fill_queues(queues)
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in models.items()}
    times = {k: [] for k in models}
    generator = torch.Generator().manual_seed(0)
    num_classes = models["vanilla"].roi_heads.num_classes
    with EventStorage(start_iter=1):
        for step in range(steps + 2):
            batch = random_batch(generator, num_classes)
            for name, model in models.items():
                elapsed = train_step(model, optimizers[name], batch)
                if step >= 2:  # warm-up steps excluded
                    times[name].append(elapsed)
    vanilla = statistics.median(times["vanilla"]) * 1e3
    print(
        f"demo model (configs/Synthetic, GN R18-FPN, 128x128, batch 4, {num_classes} classes), "
        f"{steps} steps each, median ms per step and ratio to vanilla:"
    )
    for name in models:
        median = statistics.median(times[name]) * 1e3
        print(f"  {name:<18} {median:8.1f} ms  x{median / vanilla:.3f}")


def bench_voc_shape(steps: int, num_fg: int = 256) -> None:
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 20
    cfg.VOS.START_ITER = 0
    predictor = VOSOutputLayers(cfg, ShapeSpec(channels=1024))
    fill_queues(predictor.queues)
    generator = torch.Generator().manual_seed(0)
    times = []
    with EventStorage(start_iter=1):
        for step in range(steps + 2):
            features = torch.rand(num_fg, 1024, generator=generator, requires_grad=True)
            classes = torch.randint(0, 20, (num_fg,), generator=generator)
            start = time.perf_counter()
            logits = predictor.cls_score(features)[:, :20]
            predictor._enqueue(features, classes)
            sum(predictor._uncertainty_losses(logits, features).values()).backward()
            if step >= 2:
                times.append(time.perf_counter() - start)
    print(f"VOC shape (20 classes, 1024-d, queue 1000, 10,000 candidates, {num_fg} fg boxes):")
    print(f"  VOS-specific work   {statistics.median(times) * 1e3:8.1f} ms per step (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    args = parser.parse_args()
    bench_small_model(args.steps)
    bench_voc_shape(args.steps)


if __name__ == "__main__":
    main()
