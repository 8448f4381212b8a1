"""VOS for image classifiers (plain PyTorch): a wrapper around any backbone of pooled features.

The wrapper adds to a backbone what the VOS article's classifier has: a bottleneck (64-d by
default), a linear classifier, and the detector's VOS machinery reused as is: the per-class
feature queues (:class:`~vos_det.core.queues.ClassFeatureQueues`), the virtual-outlier synthesis
(:class:`~vos_det.core.outlier_synthesis.OutlierSynthesizer`, the paper's Gaussian fringe), the energy uncertainty head
(:class:`~vos_det.core.energy.EnergyUncertaintyHead`) and the score registry (:mod:`vos_det.core.scores`).
The bottleneck output plays the part of the detector's box features: it is what the queues hold,
what the outliers are sampled in, and what the feature scores read.
"""

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.covariance import COVARIANCE_ESTIMATORS
from ..core.energy import EnergyUncertaintyHead
from ..core.feature_statistics import MissingStatisticsError
from ..core.field_checks import check_fields
from ..core.outlier_synthesis import OutlierSynthesizer
from ..core.queues import ClassFeatureQueues
from ..core.scores import DEFAULT_KNN_K, ScoreInputs, compute_scores, get_score
from ..pretraining.resnet import ResNetGN
from ..pretraining.trainer import normalize_rgb

__all__ = [
    "CLASSIFIER_SCORES",
    "PretrainedResNet",
    "SmallCNN",
    "VOSClassifier",
    "VOSClassifierConfig",
]

#: Every registered score applies to a classifier: the logit scores and the feature scores.
CLASSIFIER_SCORES = (
    "vos",
    "energy",
    "msp",
    "max_logit",
    "mahalanobis",
    "relative_mahalanobis",
    "knn",
)


@dataclasses.dataclass(frozen=True)
class VOSClassifierConfig:
    """The VOS hyper-parameters of :class:`VOSClassifier` (defaults: the VOS paper's).

    Attributes:
        bottleneck_dim (int): D, size of the features the queues hold (the article: 64).
        queue_size (int): vectors kept per class (>= 2).
        min_queue_fill (int or None): vectors a class queue needs to get outliers; None: full.
        start_iter (int): first training iteration with the uncertainty loss (>= 0).
        loss_weight (float): weight of the uncertainty loss (>= 0; 0 trains a vanilla model).
        num_candidates (int): samples drawn per class, of which the least likely are kept.
        num_select (int): virtual outliers kept per class and iteration.
        cov_eps (float): ridge added to the shared covariance (feature units squared) by the
            "ridge" estimator.
        covariance (str): how the queues estimate the shared covariance: "ridge",
            "ledoit_wolf" or "oas" (:mod:`vos_det.core.covariance`).
        knn_k (int): the neighbour the ``knn`` score measures.
        scores (tuple[str, ...]): registered scores :meth:`VOSClassifier.scores` computes.

    Raises:
        ValueError: naming the first field out of range, or an unknown score.
    """

    bottleneck_dim: int = 64
    queue_size: int = 1000
    min_queue_fill: Optional[int] = None
    start_iter: int = 0
    loss_weight: float = 0.1
    num_candidates: int = 10000
    num_select: int = 1
    cov_eps: float = 1e-4
    covariance: str = "ridge"
    knn_k: int = DEFAULT_KNN_K
    scores: Tuple[str, ...] = CLASSIFIER_SCORES

    def __post_init__(self) -> None:
        checks = (
            ("bottleneck_dim", self.bottleneck_dim >= 1, "must be >= 1"),
            ("queue_size", self.queue_size >= 2, "must be >= 2 to estimate a covariance"),
            (
                "min_queue_fill",
                self.min_queue_fill is None or 1 <= self.min_queue_fill <= self.queue_size,
                "must be None or in [1, queue_size]",
            ),
            ("start_iter", self.start_iter >= 0, "must be >= 0"),
            ("loss_weight", self.loss_weight >= 0, "must be >= 0"),
            ("num_candidates", self.num_candidates >= 1, "must be >= 1"),
            ("num_select", 1 <= self.num_select <= self.num_candidates, "must be in [1, N]"),
            ("cov_eps", self.cov_eps >= 0, "must be >= 0"),
            (
                "covariance",
                self.covariance in COVARIANCE_ESTIMATORS,
                f"must be one of {', '.join(COVARIANCE_ESTIMATORS)}",
            ),
            ("knn_k", 1 <= self.knn_k, "must be >= 1"),
        )
        check_fields(self, checks)
        object.__setattr__(self, "scores", tuple(self.scores))
        for name in self.scores:
            get_score(name)  # ValueError naming the registered scores


class SmallCNN(nn.Module):
    """A small CNN for tiny images, trained from scratch: conv-BN-ReLU blocks, global pooling.

    Three stages of widths ``(w, 2w, 4w)`` (two 3x3 convolutions each, the first of the second
    and third stages with stride 2), then global average pooling.
    """

    def __init__(self, width: int = 16):
        """
        Args:
            width (int): channels of the first stage; the pooled features have ``4 * width``.
        """
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        layers = []
        channels = 3
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers += [
                    nn.Conv2d(channels, out_channels, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                ]
                channels = out_channels
        self.layers = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, images: Tensor) -> Tensor:
        """Args: images (Tensor): [N, 3, H, W] in [0, 1]. Returns: [N, 4 * width] features."""
        return self.layers(images)


class PretrainedResNet(nn.Module):
    """A pretrained :class:`~vos_det.pretraining.resnet.ResNetGN` as a classifier backbone: RGB
    images in [0, 1] are normalised as in pretraining (:func:`normalize_rgb`), the last stage is
    globally pooled.

    With ``frozen`` the ResNet keeps its pretrained weights (no gradients, run without
    autograd), as the detector's frozen backbone does; otherwise it is fine-tuned.
    """

    def __init__(self, resnet: ResNetGN, frozen: bool = False):
        """
        Args:
            resnet (ResNetGN): the pretrained network (e.g.
                :func:`~vos_det.pretraining.weights.load_pretrained_backbone`).
            frozen (bool): keep its weights fixed.
        """
        super().__init__()
        self.resnet = resnet
        self.frozen = frozen
        self.out_features = resnet.out_channels["res5"]
        if frozen:
            self.resnet.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        """Args: images (Tensor): [N, 3, H, W] RGB in [0, 1]. Returns: [N, C5] features."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.resnet.pooled(normalize_rgb(images))


class VOSClassifier(nn.Module):
    """A classifier trained with virtual outlier synthesis.

    ``backbone -> bottleneck (Linear + ReLU, like the detector's box head) -> classifier``; the
    bottleneck features of the training images fill the class queues, and from ``start_iter``
    on virtual outliers sampled around the class means are pushed through the classifier and
    the energy uncertainty head learns to tell them from the real images.
    """

    def __init__(
        self,
        backbone: nn.Module,
        backbone_dim: int,
        num_classes: int,
        config: VOSClassifierConfig = VOSClassifierConfig(),
    ):
        """
        Args:
            backbone (nn.Module): maps images to [N, backbone_dim] pooled features.
            backbone_dim (int): size of the backbone's features.
            num_classes (int): K, the number of (ID) classes.
            config (VOSClassifierConfig): VOS hyper-parameters.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.backbone = backbone
        dim = config.bottleneck_dim
        self.bottleneck = nn.Sequential(nn.Linear(backbone_dim, dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(dim, num_classes)
        self.uncertainty = EnergyUncertaintyHead(num_classes)
        self.queues = ClassFeatureQueues(
            num_classes,
            config.queue_size,
            dim,
            eps=config.cov_eps,
            covariance_estimator=config.covariance,
        )
        self.synthesizer = OutlierSynthesizer("gaussian", config.num_candidates, config.num_select)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """Args: images (Tensor): what the backbone takes, e.g. [N, 3, H, W].

        Returns:
            tuple[Tensor, Tensor]: logits [N, K] and bottleneck features [N, D].
        """
        features = self.bottleneck(self.backbone(images))
        return self.classifier(features), features

    def losses(
        self, logits: Tensor, features: Tensor, labels: Tensor, iteration: int
    ) -> Dict[str, Tensor]:
        """The training losses of one batch; pushes its features into the class queues.

        ``loss_uncertainty`` is exactly 0, and nothing is sampled, before ``start_iter``, with
        ``loss_weight`` 0, or while no class queue is ready (``min_queue_fill``).

        Args:
            logits (Tensor): [N, K] logits of the batch (from :meth:`forward`).
            features (Tensor): [N, D] their bottleneck features.
            labels (Tensor): [N] int64 ground-truth classes in [0, K).
            iteration (int): the training iteration, from 0.

        Returns:
            dict[str, Tensor]: scalars ``loss_cls`` (cross-entropy) and ``loss_uncertainty``
            (``loss_weight`` x the energy head's binary cross-entropy, real images ID, virtual
            outliers OOD).
        """
        self.queues.push(features, labels)
        losses = {"loss_cls": F.cross_entropy(logits, labels)}
        outliers = self._virtual_outliers(iteration)
        if outliers is None:
            losses["loss_uncertainty"] = logits.new_zeros(())
            return losses
        ood_energy = self.uncertainty.energy(self.classifier(outliers.to(features.dtype)))
        id_energy = self.uncertainty.energy(logits)
        loss = self.uncertainty.loss(id_energy, ood_energy)
        losses["loss_uncertainty"] = self.config.loss_weight * loss
        return losses

    def _virtual_outliers(self, iteration: int) -> Optional[Tensor]:
        """[M, D] virtual outliers of the ready classes, or None when the loss is off."""
        config = self.config
        if iteration < config.start_iter or config.loss_weight == 0:
            return None
        ready = self.queues.ready_classes(config.min_queue_fill)
        if not bool(ready.any()):
            return None
        return self.synthesizer(self.queues, ready)

    @torch.no_grad()
    def scores(
        self, logits: Tensor, features: Tensor, names: Optional[Sequence[str]] = None
    ) -> Dict[str, Tensor]:
        """ID-ness scores (higher = more in-distribution) of N images.

        Args:
            logits (Tensor): [N, K] logits.
            features (Tensor): [N, D] bottleneck features (read by the feature scores, against
                the queues' statistics).
            names (Sequence[str], optional): registered score names; default ``config.scores``.

        Returns:
            dict[str, Tensor]: name -> [N] scores.

        Raises:
            MissingStatisticsError: a feature score before the queues hold its vectors.
        """
        inputs = ScoreInputs(
            fg_logits=logits,
            box_features=features,
            uncertainty=self.uncertainty,
            queues=self.queues,
            knn_k=self.config.knn_k,
        )
        try:
            return compute_scores(self.config.scores if names is None else names, inputs)
        except MissingStatisticsError as error:
            raise MissingStatisticsError(
                f"{error} A VOSClassifier's queues fill in training (VOSClassifier.losses pushes "
                "each batch's bottleneck features); until then score with names that read only "
                "the logits, e.g. names=('energy', 'msp'). VOSClassifierConfig.knn_k is knn's k."
            ) from error
