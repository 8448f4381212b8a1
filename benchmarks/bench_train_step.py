#!/usr/bin/env python3
"""Training-step cost of VOS vs the vanilla detector, measured side by side in one run.

1. The demo's small CPU model (configs/Synthetic: GN ResNet-18 FPN Faster R-CNN, 128x128
   images, batch 4), vanilla and VOS (past START_ITER, queues full), timed on the same batches in alternation.
2. The VOS-specific work alone at the VOC shape (20 classes, 1024-d box features, queue 1000,
   10,000 candidates, 256 foreground boxes per step): queue push, statistics, outlier
   synthesis, the outliers' classification and the uncertainty loss with its backward pass.

    python benchmarks/bench_train_step.py [--steps 20]
"""

import argparse
import statistics
import time

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import vos_det
from vos_det.modeling import VOSOutputLayers


def small_model(vos_enabled: bool):
    """The demo's model (configs/Synthetic), built untrained, past START_ITER."""
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(vos_det.model_zoo.get_config_file("Synthetic/vos.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "VOS.START_ITER", 0, "VOS.ENABLED", vos_enabled])
    torch.manual_seed(0)
    return build_model(cfg).train()


def random_batch(
    generator: torch.Generator, num_classes: int, size: int = 128, images: int = 4
):
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
    models = {"vanilla": small_model(False), "vos": small_model(True)}
    queues = models["vos"].roi_heads.box_predictor.queues
    fill_queues(queues)
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in models.items()}
    times = {k: [] for k in models}
    generator = torch.Generator().manual_seed(0)
    with EventStorage(start_iter=1):
        for step in range(steps + 2):
            batch = random_batch(generator, queues.num_classes)
            for name, model in models.items():
                elapsed = train_step(model, optimizers[name], batch)
                if step >= 2:  # warm-up steps excluded
                    times[name].append(elapsed)
    vanilla, vos = (statistics.median(times[k]) * 1e3 for k in ("vanilla", "vos"))
    print(
        f"demo model (configs/Synthetic, GN R18-FPN, 128x128, batch 4, {queues.num_classes} "
        f"classes, {queues.dim}-d), {steps} steps each, median:"
    )
    print(f"  vanilla step        {vanilla:8.1f} ms")
    print(f"  VOS step            {vos:8.1f} ms")
    print(f"  VOS / vanilla       {vos / vanilla:8.3f}  (target <= 1.10)")


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
            loss = predictor._uncertainty_loss(logits, features, classes)
            loss.backward()
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
