"""The registry of per-box ID-ness scores (plain PyTorch).

Every score maps what the box predictor knows about R detections to an (R,) ID-ness: higher means
more in-distribution. A score declares what it reads beyond the foreground logits
(:data:`SCORE_REQUIREMENTS`), so the predictor, the evaluator and the config validation all work
from this one table, and a new score (say, one on the box features and the queue statistics) is
one :func:`register_score` away::

    @register_score("my_score", requires=("box_features",))
    def my_score(inputs: ScoreInputs) -> Tensor:
        return -inputs.box_features.norm(dim=1)

The predictor attaches each computed score to its detections as the field ``<name>_scores``
(:func:`score_field`).

Built in: the logit scores ``vos``, ``energy``, ``msp``, ``max_logit``; the feature scores
``mahalanobis``, ``relative_mahalanobis``, ``knn``, which read the box features against the
queues' statistics (:mod:`vos_det.core.feature_statistics`, factorised once per state of the queues);
``crop_mahalanobis`` and ``crop_knn``, the same on box-crop features (each box resampled from
the image and embedded by the pretrained backbone) against their own class queues;
``layer_mahalanobis``, the sum of the standardised Mahalanobis distances of ROI-pooled features
of several backbone layers (:mod:`vos_det.core.layer_statistics`), and
``layer_mahalanobis_<layer>`` one such layer's (for the layers of :data:`LAYER_NAMES`); and
``feature_head``, the trained feature-space uncertainty head on the box features.
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from .energy import EnergyUncertaintyHead, energy_score, max_logit_score, msp_score
from .feature_head import FeatureUncertaintyHead
from .feature_statistics import gaussian_statistics, normalized_feature_bank
from .layer_statistics import LayerFeatureQueues, layer_distance
from .queues import ClassFeatureQueues

__all__ = [
    "DEFAULT_KNN_K",
    "LAYER_NAMES",
    "SCORE_REQUIREMENTS",
    "ScoreDefinition",
    "ScoreInputs",
    "compute_scores",
    "get_score",
    "knn_score",
    "mahalanobis_score",
    "register_score",
    "score_field",
    "score_names",
    "scores_requiring",
]

#: What a score may need besides the foreground logits, and what provides it.
SCORE_REQUIREMENTS = {
    "box_features": "the box head's (R, D) features of the detections",
    "uncertainty": "the trained energy uncertainty head (VOSOutputLayers.uncertainty)",
    "queues": "the per-class feature queues and their Gaussian statistics",
    "feature_head": "the feature-space uncertainty head (VOS.FEATURE_HEAD.HIDDEN_DIM > 0)",
    "crop_features": (
        "the detections' box crops embedded by the pretrained crop encoder, and their class "
        "queues (VOS.CROP_FEATURES)"
    ),
    "layer_features": (
        "ROI-pooled features of the detections at the backbone layers of "
        "VOS.LAYER_FEATURES.IN_FEATURES, and their class queues"
    ),
}

#: The layers with a ``layer_mahalanobis_<layer>`` score: a ResNet's stages and the FPN levels,
#: as Detectron2 names them.
LAYER_NAMES = ("res2", "res3", "res4", "res5", "p2", "p3", "p4", "p5", "p6")

#: The default k of the ``knn`` score (``VOS.KNN_K``).
DEFAULT_KNN_K = 10


@dataclass(frozen=True)
class ScoreInputs:
    """What a score may read about R detections.

    Attributes:
        fg_logits (Tensor): (R, K) foreground class logits (background logit removed).
        box_features (Tensor or None): (R, D) box head features of the same detections.
        uncertainty (EnergyUncertaintyHead or None): the energy uncertainty head.
        queues (ClassFeatureQueues or None): the class feature queues.
        feature_head (FeatureUncertaintyHead or None): the feature-space uncertainty head.
        crop_features (Tensor or None): (R, C) box-crop features of the same detections.
        crop_queues (ClassFeatureQueues or None): the class queues of crop features.
        layer_features (Mapping[str, Tensor] or None): layer name -> (R, C_l) ROI-pooled
            features of the same detections.
        layer_queues (LayerFeatureQueues or None): the class queues of those layers.
        knn_k (int): which nearest queued vector the ``knn`` scores measure (``VOS.KNN_K``).
    """

    fg_logits: Tensor
    box_features: Optional[Tensor] = None
    uncertainty: Optional[EnergyUncertaintyHead] = None
    queues: Optional[ClassFeatureQueues] = None
    feature_head: Optional[FeatureUncertaintyHead] = None
    crop_features: Optional[Tensor] = None
    crop_queues: Optional[ClassFeatureQueues] = None
    layer_features: Optional[Mapping[str, Tensor]] = None
    layer_queues: Optional[LayerFeatureQueues] = None
    knn_k: int = DEFAULT_KNN_K

    def available(self) -> FrozenSet[str]:
        """Returns: the names of :data:`SCORE_REQUIREMENTS` these inputs provide
        ("crop_features" and "layer_features" when both the features and their queues are
        there)."""
        present = {name for name in SCORE_REQUIREMENTS if getattr(self, name, None) is not None}
        if self.crop_queues is None:
            present.discard("crop_features")
        if self.layer_queues is None:
            present.discard("layer_features")
        return frozenset(present)


@dataclass(frozen=True)
class ScoreDefinition:
    """A registered score.

    Attributes:
        name (str): the name used in ``VOS.SCORE`` and ``VOS.EVAL.SCORES``.
        function (callable): ``ScoreInputs -> (R,) Tensor``, higher = more in-distribution.
        requires (frozenset[str]): keys of :data:`SCORE_REQUIREMENTS` it reads.
        value_range (tuple[float, float]): the closed interval its values lie in (for checking a
            user's threshold); ``(-inf, inf)`` when unbounded.
    """

    name: str
    function: Callable[[ScoreInputs], Tensor]
    requires: FrozenSet[str]
    value_range: Tuple[float, float]


_REGISTRY: Dict[str, ScoreDefinition] = {}


def register_score(
    name: str,
    requires: Iterable[str] = (),
    value_range: Tuple[float, float] = (-math.inf, math.inf),
) -> Callable[[Callable[[ScoreInputs], Tensor]], Callable[[ScoreInputs], Tensor]]:
    """Decorator adding a score function to the registry under ``name``.

    Args:
        name (str): the score's name; must not be registered yet.
        requires (Iterable[str]): keys of :data:`SCORE_REQUIREMENTS` the function reads.
        value_range (tuple[float, float]): the interval the scores lie in.

    Returns:
        callable: the decorator (it returns the function unchanged).
    """
    requires = frozenset(requires)
    unknown = sorted(requires - set(SCORE_REQUIREMENTS))
    if unknown:
        raise ValueError(
            f"Score {name!r} requires {unknown}; known requirements: {sorted(SCORE_REQUIREMENTS)}"
        )

    def decorator(function: Callable[[ScoreInputs], Tensor]) -> Callable[[ScoreInputs], Tensor]:
        if name in _REGISTRY:
            raise ValueError(f"A score named {name!r} is already registered.")
        _REGISTRY[name] = ScoreDefinition(name, function, requires, tuple(value_range))
        return function

    return decorator


def score_names() -> Tuple[str, ...]:
    """Returns: the registered score names, in registration order."""
    return tuple(_REGISTRY)


def get_score(name: str) -> ScoreDefinition:
    """The registered score ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown score {name!r}; registered scores: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def scores_requiring(requirement: str, names: Iterable[str]) -> Tuple[str, ...]:
    """Returns: those of the registered scores ``names`` that read ``requirement`` (a key of
    :data:`SCORE_REQUIREMENTS`), in the given order."""
    return tuple(name for name in names if requirement in get_score(name).requires)


def score_field(name: str) -> str:
    """Returns: the ``Instances`` field holding score ``name`` (``"<name>_scores"``)."""
    return f"{name}_scores"


def compute_scores(names: Sequence[str], inputs: ScoreInputs) -> Dict[str, Tensor]:
    """Compute the named scores of R detections.

    Args:
        names (Sequence[str]): registered score names.
        inputs (ScoreInputs): what the scores read.

    Returns:
        dict[str, Tensor]: name -> (R,) scores.

    Raises:
        ValueError: naming a score whose requirement ``inputs`` does not provide.
    """
    available = inputs.available()
    scores = {}
    for name in names:
        definition = get_score(name)
        missing = sorted(definition.requires - available)
        if missing:
            raise ValueError(
                f"Score {name!r} needs {'; '.join(SCORE_REQUIREMENTS[m] for m in missing)}, "
                "which this model does not provide."
            )
        scores[name] = definition.function(inputs)
    return scores


@register_score("vos", requires=("uncertainty",), value_range=(0.0, 1.0))
def _vos(inputs: ScoreInputs) -> Tensor:
    """Sigmoid of the logistic layer on the weighted energy (VOS paper, eq. 8)."""
    return inputs.uncertainty.vos_score(inputs.fg_logits)


@register_score("energy")
def _energy(inputs: ScoreInputs) -> Tensor:
    """Negative energy ``logsumexp_k f_k`` (the score of the paper's tables)."""
    return energy_score(inputs.fg_logits)


@register_score("msp", value_range=(0.0, 1.0))
def _msp(inputs: ScoreInputs) -> Tensor:
    """Maximum softmax probability over the foreground classes."""
    return msp_score(inputs.fg_logits)


@register_score("max_logit")
def _max_logit(inputs: ScoreInputs) -> Tensor:
    """Maximum foreground logit."""
    return max_logit_score(inputs.fg_logits)


def mahalanobis_score(features: Tensor, queues: ClassFeatureQueues) -> Tensor:
    """Minus the smallest squared Mahalanobis distance of (R, d) features to a class mean of
    ``queues`` under their shared covariance (Lee et al. 2018), over the classes holding >= 2
    vectors; (R,) float64."""
    return -gaussian_statistics(queues).min_class_distance(features)


def knn_score(features: Tensor, queues: ClassFeatureQueues, k: int) -> Tensor:
    """Minus the Euclidean distance of the L2-normalised (R, d) features to their k-th nearest
    L2-normalised vector of ``queues``, all classes together (Sun et al. 2022); (R,) float64."""
    return -normalized_feature_bank(queues).kth_neighbour_distance(features, k)


@register_score("mahalanobis", requires=("box_features", "queues"), value_range=(-math.inf, 0.0))
def _mahalanobis(inputs: ScoreInputs) -> Tensor:
    """:func:`mahalanobis_score` of the box features against the feature queues."""
    return mahalanobis_score(inputs.box_features, inputs.queues)


@register_score("relative_mahalanobis", requires=("box_features", "queues"))
def _relative_mahalanobis(inputs: ScoreInputs) -> Tensor:
    """Minus ``min_k`` (squared class distance - squared distance to the class-agnostic Gaussian
    of all queued vectors) (Ren et al. 2021), over the classes holding >= 2 vectors; float64."""
    return -gaussian_statistics(inputs.queues).min_relative_distance(inputs.box_features)


@register_score("knn", requires=("box_features", "queues"), value_range=(-2.0, 0.0))
def _knn(inputs: ScoreInputs) -> Tensor:
    """:func:`knn_score` of the box features against the feature queues (k = ``knn_k``)."""
    return knn_score(inputs.box_features, inputs.queues, inputs.knn_k)


@register_score("crop_mahalanobis", requires=("crop_features",), value_range=(-math.inf, 0.0))
def _crop_mahalanobis(inputs: ScoreInputs) -> Tensor:
    """:func:`mahalanobis_score` of the box-crop features against the crop queues."""
    return mahalanobis_score(inputs.crop_features, inputs.crop_queues)


@register_score("crop_knn", requires=("crop_features",), value_range=(-2.0, 0.0))
def _crop_knn(inputs: ScoreInputs) -> Tensor:
    """:func:`knn_score` of the box-crop features against the crop queues (k = ``knn_k``)."""
    return knn_score(inputs.crop_features, inputs.crop_queues, inputs.knn_k)


@register_score("layer_mahalanobis", requires=("layer_features",))
def _layer_mahalanobis(inputs: ScoreInputs) -> Tensor:
    """Minus the sum over the queued layers of the standardised squared Mahalanobis distances
    (:meth:`LayerFeatureQueues.combined_distance`); float64."""
    return -inputs.layer_queues.combined_distance(inputs.layer_features)


def _register_layer_score(layer: str) -> None:
    """Register ``layer_mahalanobis_<layer>``: minus one layer's smallest squared Mahalanobis
    distance to a class mean of its queues."""

    @register_score(
        f"layer_mahalanobis_{layer}", requires=("layer_features",), value_range=(-math.inf, 0.0)
    )
    def _one_layer(inputs: ScoreInputs) -> Tensor:
        return -layer_distance(inputs.layer_queues, inputs.layer_features, layer)


for _layer in LAYER_NAMES:
    _register_layer_score(_layer)


@register_score("feature_head", requires=("box_features", "feature_head"), value_range=(0.0, 1.0))
def _feature_head(inputs: ScoreInputs) -> Tensor:
    """Sigmoid of the feature-space uncertainty head on the box features (as in NPOS)."""
    return inputs.feature_head.id_score(inputs.box_features)
