"""Training and OOD evaluation of a :class:`~vos_det.classification.model.VOSClassifier` on CPU.

:func:`train_classifier` runs SGD with a cosine learning rate over shuffled mini-batches with
random flips; :func:`evaluate_classifier` measures the accuracy on the ID test set and, for every
OOD set and score, FPR95 / AUROC / AUPR with the detector's metrics code
(:func:`~vos_det.core.ood_metrics.ood_metrics`, ID = positive class).
"""

import dataclasses
import math
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..core.field_checks import check_fields
from ..core.ood_metrics import ood_metrics
from .model import SmallCNN, VOSClassifier, VOSClassifierConfig

__all__ = [
    "TrainingConfig",
    "build_classifier",
    "evaluate_classifier",
    "predict",
    "train_classifier",
]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How :func:`train_classifier` optimises.

    Attributes:
        epochs (int): passes over the training set (>= 1).
        batch_size (int): images per step (>= 1).
        learning_rate (float): initial SGD learning rate (> 0), cosine-annealed to 0.
        momentum (float): SGD (Nesterov) momentum in [0, 1).
        weight_decay (float): L2 penalty (>= 0).
        seed (int): seeds the model's initialisation, the batches, the flips and the outliers.

    Raises:
        ValueError: naming the first field out of range.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("momentum", 0 <= self.momentum < 1, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("seed", self.seed >= 0, "must be >= 0"),
        )
        check_fields(self, checks)

    def iterations_per_epoch(self, num_images: int) -> int:
        """Returns: the steps of one epoch over ``num_images`` images (the last batch may be
        smaller)."""
        return math.ceil(num_images / self.batch_size)


def build_classifier(
    num_classes: int,
    config: VOSClassifierConfig,
    seed: int,
    width: int = 16,
    backbone: Optional[nn.Module] = None,
) -> VOSClassifier:
    """A :class:`VOSClassifier` whose new layers are initialised from ``seed``.

    Args:
        num_classes (int): K.
        config (VOSClassifierConfig): VOS hyper-parameters.
        seed (int): seeds the initialisation.
        width (int): first-stage channels of the :class:`SmallCNN` built when no ``backbone``.
        backbone (nn.Module or None): a pretrained backbone with ``out_features`` (e.g.
            :class:`PretrainedResNet`); None: a :class:`SmallCNN` trained from scratch.
    """
    torch.manual_seed(seed)
    backbone = backbone if backbone is not None else SmallCNN(width)
    return VOSClassifier(backbone, backbone.out_features, num_classes, config)


def train_classifier(
    model: VOSClassifier, images: Tensor, labels: Tensor, config: TrainingConfig
) -> List[Dict[str, float]]:
    """Train ``model`` in place: ``loss_cls + loss_uncertainty`` per step.

    Args:
        model (VOSClassifier): the model; its queues fill as it trains.
        images (Tensor): [N, 3, H, W] float32 training images in [0, 1].
        labels (Tensor): [N] int64 classes.
        config (TrainingConfig): optimisation settings.

    Returns:
        list[dict[str, float]]: per epoch, the mean ``loss_cls`` and ``loss_uncertainty``, the
        training accuracy (in percent) and the epoch's duration in seconds.
    """
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # the outlier sampler draws from the global generator
    steps_per_epoch = config.iterations_per_epoch(len(images))
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, config.epochs * steps_per_epoch
    )
    model.train()
    history = []
    for epoch in range(config.epochs):
        start = time.perf_counter()
        totals = {"loss_cls": 0.0, "loss_uncertainty": 0.0, "correct": 0.0}
        for step, batch in enumerate(
            torch.randperm(len(images), generator=generator).split(config.batch_size)
        ):
            logits, features = model(_random_flips(images[batch], generator))
            losses = model.losses(logits, features, labels[batch], epoch * steps_per_epoch + step)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            schedule.step()
            for name, value in losses.items():
                totals[name] += value.item() * len(batch)
            totals["correct"] += (logits.argmax(1) == labels[batch]).sum().item()
        history.append(
            {
                "epoch": epoch + 1,
                "loss_cls": totals["loss_cls"] / len(images),
                "loss_uncertainty": totals["loss_uncertainty"] / len(images),
                "train_accuracy": 100.0 * totals["correct"] / len(images),
                "seconds": time.perf_counter() - start,
            }
        )
    return history


def _random_flips(images: Tensor, generator: torch.Generator) -> Tensor:
    """[B, C, H, W] images, each flipped left-right and/or up-down with probability 1/2 (the
    classes are invariant to both)."""
    flips = torch.rand(2, len(images), generator=generator) < 0.5
    images = torch.where(flips[0, :, None, None, None], images.flip(3), images)
    return torch.where(flips[1, :, None, None, None], images.flip(2), images)


@torch.no_grad()
def predict(model: VOSClassifier, images: Tensor, batch_size: int = 500) -> Tuple[Tensor, Tensor]:
    """Logits [N, K] and bottleneck features [N, D] of [N, 3, H, W] images, in eval mode."""
    model.eval()
    outputs = [model(batch) for batch in images.split(batch_size)]
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])


def evaluate_classifier(
    model: VOSClassifier,
    id_images: Tensor,
    id_labels: Tensor,
    ood_sets: Dict[str, Tensor],
    tpr: float = 0.95,
) -> Tuple[dict, Dict[str, Dict[str, np.ndarray]]]:
    """Accuracy on the ID test set and OOD metrics per OOD set and score.

    Args:
        model (VOSClassifier): a trained model (its queues hold training features).
        id_images (Tensor): [N, 3, H, W] ID test images; id_labels (Tensor): [N] their classes.
        ood_sets (dict[str, Tensor]): name -> [M, 3, H, W] OOD images.
        tpr (float): true-positive rate of the FPR metric (0.95: FPR95).

    Returns:
        tuple: (metrics, scores). metrics: ``{"accuracy": percent, "ood": {set: {score:
        {"FPR95", "AUROC", "AUPR"} in percent}}}``; scores: ``{"id": ..., set: ...}``, each
        ``{score name: [N] float64 array}``.
    """
    logits, features = predict(model, id_images)
    accuracy = 100.0 * (logits.argmax(1) == id_labels).double().mean().item()
    scores = {"id": _numpy_scores(model, logits, features)}
    for name, images in ood_sets.items():
        scores[name] = _numpy_scores(model, *predict(model, images))
    ood = {
        name: {
            score: ood_metrics(scores["id"][score], scores[name][score], tpr=tpr)
            for score in model.config.scores
        }
        for name in ood_sets
    }
    return {"accuracy": accuracy, "ood": ood}, scores


def _numpy_scores(model: VOSClassifier, logits: Tensor, features: Tensor) -> Dict[str, np.ndarray]:
    return {name: s.double().numpy() for name, s in model.scores(logits, features).items()}
