"""Classification pretraining of a ResNet-GN on corpus crops (plain PyTorch, on the fly).

The embedded benchmarks' stand-in for ImageNet pretraining: a :class:`~.resnet.ResNetGN` and a
linear classifier learn the corpus classes (:mod:`.corpus`) from single-object crops drawn as
they are needed, by a data-loader worker, so that nothing but the trained weights is stored.
Sample ``i`` (its class ``i mod num_classes``, its pose, colours and background) depends only on
the crop seed and ``i``, and the network's initialisation only on ``seed``: with the same number
of threads a run is reproducible bit for bit.

Images are normalised as the benchmark's detector normalises them (Detectron2's BGR order,
``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` of ``configs/Synthetic/Base-Synthetic.yaml``, values in
0-255): the backbone that the detector and the classifier fine-tune sees the same inputs as in
pretraining (:func:`normalize_rgb`).
"""

import dataclasses
import math
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.field_checks import check_fields
from .corpus import CorpusSpec, ShapeTemplate, corpus_templates, render_corpus_crop
from .resnet import ResNetGN

__all__ = [
    "PIXEL_MEAN_BGR",
    "PIXEL_STD_BGR",
    "CorpusCrops",
    "PretrainingConfig",
    "PretrainingResult",
    "evaluate_pretrained",
    "normalize_rgb",
    "pretrain_backbone",
]

#: The detector's input normalisation (Detectron2's default mean; unit-variance std), BGR, 0-255.
PIXEL_MEAN_BGR = (103.53, 116.28, 123.675)
PIXEL_STD_BGR = (57.375, 57.120, 58.395)

_VALIDATION_SEED_OFFSET = 1_000_003  # crop seed of the held-out crops: seed + this


@dataclasses.dataclass(frozen=True)
class PretrainingConfig:
    """Everything a pretraining run depends on (recorded in the weights' manifest).

    Attributes:
        num_classes (int): corpus classes (:class:`~.corpus.CorpusSpec`).
        corpus_seed (int): seed of the corpus templates.
        crop_size (int): side of the training crops in pixels; the detector's objects (18-48 px
            at 128 px) are about this size, so the crop features read boxes resampled to it.
        depth (int): ResNet depth, 18 or 34 (the benchmark detector's ``RESNETS.DEPTH``).
        steps (int): optimiser steps.
        batch_size (int): crops per step.
        learning_rate (float): peak SGD learning rate, after a linear warm-up, then cosine to 0.
        warmup_steps (int): steps of the linear warm-up.
        momentum (float): SGD (Nesterov) momentum.
        weight_decay (float): L2 penalty.
        seed (int): seeds the initialisation and the crops.
        validation_crops (int): held-out crops for the final accuracy (drawn with another seed).
    """

    num_classes: int = 64
    corpus_seed: int = 0
    crop_size: int = 32
    depth: int = 18
    steps: int = 1600
    batch_size: int = 128
    learning_rate: float = 0.1
    warmup_steps: int = 50
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    validation_crops: int = 2000

    def __post_init__(self) -> None:
        checks = (
            ("num_classes", self.num_classes >= 2, "must be >= 2"),
            ("crop_size", self.crop_size >= 16, "must be >= 16"),
            ("steps", self.steps >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("warmup_steps", self.warmup_steps >= 0, "must be >= 0"),
            ("momentum", 0 <= self.momentum < 1, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("seed", self.seed >= 0, "must be >= 0"),
            ("validation_crops", self.validation_crops >= 1, "must be >= 1"),
        )
        check_fields(self, checks)

    @property
    def corpus(self) -> CorpusSpec:
        """The corpus this run learns."""
        return CorpusSpec(num_classes=self.num_classes, seed=self.corpus_seed)

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (from 0): linear warm-up, cosine decay."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return self.learning_rate * warmup * 0.5 * (1 + math.cos(math.pi * step / self.steps))


class CorpusCrops(torch.utils.data.Dataset):
    """Corpus crops drawn on demand: item ``i`` is class ``i mod num_classes`` drawn from seed
    ``(seed, i)`` (:func:`~.corpus.render_corpus_crop`)."""

    def __init__(self, templates: Tuple[ShapeTemplate, ...], crop_size: int, seed: int, size: int):
        """
        Args:
            templates (tuple[ShapeTemplate, ...]): the corpus classes.
            crop_size (int): side of the crops in pixels.
            seed (int): seed of the crops.
            size (int): number of items.
        """
        self.templates = templates
        self.crop_size = crop_size
        self.seed = seed
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Tuple[Tensor, int]:
        """Returns: (3, S, S) uint8 RGB crop and its class."""
        label = index % len(self.templates)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(index,)))
        crop = render_corpus_crop(rng, self.templates, label, self.crop_size)
        return torch.from_numpy(crop).permute(2, 0, 1), label


def normalize_rgb(images: Tensor) -> Tensor:
    """RGB images -> the detector's normalised BGR input.

    Args:
        images (Tensor): (N, 3, H, W) RGB, uint8 in 0-255 or float in [0, 1].

    Returns:
        Tensor: (N, 3, H, W) float32, BGR, ``(x - PIXEL_MEAN_BGR) / PIXEL_STD_BGR`` on 0-255.
    """
    scale = 1.0 if images.dtype == torch.uint8 else 255.0
    bgr = images.flip(1).float() * scale
    mean = bgr.new_tensor(PIXEL_MEAN_BGR).view(1, 3, 1, 1)
    std = bgr.new_tensor(PIXEL_STD_BGR).view(1, 3, 1, 1)
    return (bgr - mean) / std


@dataclasses.dataclass
class PretrainingResult:
    """What :func:`pretrain_backbone` trained.

    Attributes:
        backbone (ResNetGN): the pretrained network (what is exported).
        classifier (nn.Linear): its corpus classifier (for :func:`evaluate_pretrained` only).
        history (list[dict[str, float]]): one entry per tenth of the run: ``"step"``, mean
            ``"loss"`` and ``"train_accuracy"`` (percent) over it, and ``"seconds"`` so far.
    """

    backbone: ResNetGN
    classifier: nn.Linear
    history: List[Dict[str, float]]


def pretrain_backbone(
    config: PretrainingConfig,
    on_step: Optional[Callable[[int, float], None]] = None,
    loader_workers: int = 1,
) -> PretrainingResult:
    """Train a ResNet-GN and a linear classifier on the corpus classes.

    Args:
        config (PretrainingConfig): the run.
        on_step (callable or None): called after each step as ``on_step(step, loss)``
            (e.g. a progress bar).
        loader_workers (int): processes drawing crops (0: in this process).

    Returns:
        PretrainingResult: the trained networks and the loss history.
    """
    templates = corpus_templates(config.corpus)
    torch.manual_seed(config.seed)
    backbone = ResNetGN(config.depth)
    classifier = nn.Linear(backbone.out_channels["res5"], config.num_classes)
    parameters = list(backbone.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.SGD(
        parameters,
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )
    crops = CorpusCrops(
        templates, config.crop_size, config.seed, config.steps * config.batch_size
    )
    loader = torch.utils.data.DataLoader(
        crops, batch_size=config.batch_size, shuffle=False, num_workers=loader_workers
    )
    backbone.train()
    history: List[Dict[str, float]] = []
    report_every = max(1, config.steps // 10)
    totals = {"loss": 0.0, "correct": 0.0, "seen": 0.0}
    start = time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(step)
        logits = classifier(backbone.pooled(normalize_rgb(images)))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals["loss"] += loss.item() * len(labels)
        totals["correct"] += (logits.argmax(1) == labels).sum().item()
        totals["seen"] += len(labels)
        if on_step is not None:
            on_step(step, loss.item())
        if (step + 1) % report_every == 0 or step + 1 == config.steps:
            history.append(
                {
                    "step": step + 1,
                    "loss": totals["loss"] / totals["seen"],
                    "train_accuracy": 100.0 * totals["correct"] / totals["seen"],
                    "seconds": time.perf_counter() - start,
                }
            )
            totals = {"loss": 0.0, "correct": 0.0, "seen": 0.0}
    return PretrainingResult(backbone, classifier, history)


@torch.no_grad()
def evaluate_pretrained(result: PretrainingResult, config: PretrainingConfig) -> float:
    """Accuracy (percent) of a pretrained backbone and classifier on
    ``config.validation_crops`` held-out crops (drawn with another crop seed)."""
    backbone, classifier = result.backbone, result.classifier
    templates = corpus_templates(config.corpus)
    crops = CorpusCrops(
        templates,
        config.crop_size,
        config.seed + _VALIDATION_SEED_OFFSET,
        config.validation_crops,
    )
    backbone.eval()
    correct = 0
    for first in range(0, len(crops), 250):
        items = [crops[i] for i in range(first, min(first + 250, len(crops)))]
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([item[1] for item in items])
        logits = classifier(backbone.pooled(normalize_rgb(images)))
        correct += int((logits.argmax(1) == labels).sum())
    return 100.0 * correct / len(crops)
