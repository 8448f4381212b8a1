"""Checking the ``VOS.*`` values of a config (:func:`validate_vos_config`), before a model is
built from them: every mistake is named with its key and what would work."""

from typing import Optional

from detectron2.config import CfgNode as CN
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY

from ..core.covariance import COVARIANCE_ESTIMATORS
from ..core.outlier_synthesis import SYNTHESIS_METHODS
from ..core.scores import get_score, score_names, scores_requiring
from ..core.spectral_penalty import SINGULAR_VALUE_PENALTIES
from ..evaluation.protocol import PROTOCOLS

__all__ = ["validate_vos_config"]


def validate_vos_config(cfg: CN) -> None:
    """Raise ``ValueError`` naming the key when a ``VOS.*`` value cannot work."""
    if "VOS" not in cfg:
        raise ValueError(
            "the config has no VOS section: call vos_det.add_vos_config(cfg) before "
            "merge_from_file when using ROI_HEADS.NAME 'VOSROIHeads'"
        )
    vos = cfg.VOS
    names = score_names()
    checks = [
        (vos.QUEUE_SIZE >= 2, "VOS.QUEUE_SIZE", "must be >= 2 to estimate a covariance"),
        (vos.START_ITER >= 0, "VOS.START_ITER", "must be >= 0"),
        (
            0 <= vos.MIN_QUEUE_FILL <= vos.QUEUE_SIZE,
            "VOS.MIN_QUEUE_FILL",
            "must be in [0, VOS.QUEUE_SIZE]",
        ),
        (vos.NUM_SELECT >= 1, "VOS.NUM_SELECT", "must be >= 1"),
        (vos.NUM_CANDIDATES >= vos.NUM_SELECT, "VOS.NUM_CANDIDATES", "must be >= VOS.NUM_SELECT"),
        (vos.LOSS_WEIGHT >= 0, "VOS.LOSS_WEIGHT", "must be >= 0"),
        (vos.COV_EPS > 0, "VOS.COV_EPS", "must be > 0"),
        (
            vos.FEATURE_STATS.COVARIANCE in COVARIANCE_ESTIMATORS,
            "VOS.FEATURE_STATS.COVARIANCE",
            f"must be one of {', '.join(COVARIANCE_ESTIMATORS)}",
        ),
        (vos.STATS_RECOMPUTE_PERIOD >= 1, "VOS.STATS_RECOMPUTE_PERIOD", "must be >= 1"),
        (vos.SCORE in names, "VOS.SCORE", f"must be one of {', '.join(names)}"),
        (vos.KNN_K >= 1, "VOS.KNN_K", "must be >= 1"),
        (vos.CROP_FEATURES.SIZE >= 16, "VOS.CROP_FEATURES.SIZE", "must be >= 16 pixels"),
        (vos.CROP_FEATURES.MARGIN >= 0, "VOS.CROP_FEATURES.MARGIN", "must be >= 0"),
        (vos.CROP_FEATURES.QUEUE_SIZE >= 2, "VOS.CROP_FEATURES.QUEUE_SIZE", "must be >= 2"),
        (
            vos.SYNTHESIS in SYNTHESIS_METHODS,
            "VOS.SYNTHESIS",
            f"must be one of {', '.join(SYNTHESIS_METHODS)}",
        ),
        (vos.BOUNDARY.K >= 1, "VOS.BOUNDARY.K", "must be >= 1"),
        (
            vos.SYNTHESIS != "boundary" or vos.BOUNDARY.K < vos.QUEUE_SIZE,
            "VOS.BOUNDARY.K",
            "must be < VOS.QUEUE_SIZE (a class needs K + 1 queued vectors)",
        ),
        (vos.BOUNDARY.NUM_BOUNDARY >= 1, "VOS.BOUNDARY.NUM_BOUNDARY", "must be >= 1"),
        (vos.BOUNDARY.NOISE_SCALE > 0, "VOS.BOUNDARY.NOISE_SCALE", "must be > 0"),
        (vos.ENERGY_HEAD.HIDDEN_DIM >= 0, "VOS.ENERGY_HEAD.HIDDEN_DIM", "must be >= 0"),
        (vos.FEVER.PROJECTION_DIM >= 0, "VOS.FEVER.PROJECTION_DIM", "must be >= 0"),
        (
            vos.FEVER.PROJECTION_DIM <= (_box_feature_dim(cfg) or vos.FEVER.PROJECTION_DIM),
            "VOS.FEVER.PROJECTION_DIM",
            f"must be at most the box feature's dimension ({_box_feature_dim(cfg)}, "
            "MODEL.ROI_BOX_HEAD): the projection reduces it",
        ),
        (
            vos.FEVER.PENALTY in ("none", *SINGULAR_VALUE_PENALTIES),
            "VOS.FEVER.PENALTY",
            f"must be one of none, {', '.join(SINGULAR_VALUE_PENALTIES)}",
        ),
        (vos.FEVER.PENALTY_WEIGHT >= 0, "VOS.FEVER.PENALTY_WEIGHT", "must be >= 0"),
        (vos.FEATURE_HEAD.HIDDEN_DIM >= 0, "VOS.FEATURE_HEAD.HIDDEN_DIM", "must be >= 0"),
        (vos.FEATURE_HEAD.LOSS_WEIGHT >= 0, "VOS.FEATURE_HEAD.LOSS_WEIGHT", "must be >= 0"),
        (
            vos.FEATURE_HEAD.HIDDEN_DIM == 0 or vos.ENABLED,
            "VOS.FEATURE_HEAD.HIDDEN_DIM",
            "needs VOS.ENABLED True: the feature head learns from the virtual outliers",
        ),
        (
            vos.EVAL.SCORE_THRESHOLD <= 1,
            "VOS.EVAL.SCORE_THRESHOLD",
            "must be negative (derive it from the ID set) or a class probability in [0, 1]",
        ),
        (
            vos.EVAL.PROTOCOL in PROTOCOLS,
            "VOS.EVAL.PROTOCOL",
            f"must be one of {', '.join(PROTOCOLS)}",
        ),
        (0 < vos.EVAL.TPR <= 1, "VOS.EVAL.TPR", "must be in (0, 1]"),
        (
            len(vos.EVAL.SCORES) > 0
            and len(set(vos.EVAL.SCORES)) == len(vos.EVAL.SCORES)
            and set(vos.EVAL.SCORES) <= set(names),
            "VOS.EVAL.SCORES",
            f"must list distinct names among {', '.join(names)}",
        ),
    ]
    if vos.OOD_THRESHOLD is not None and not isinstance(vos.OOD_THRESHOLD, (int, float)):
        raise ValueError(
            f"VOS.OOD_THRESHOLD={vos.OOD_THRESHOLD!r} must be a number, or None for no flag"
        )
    if vos.SCORE in names and vos.OOD_THRESHOLD is not None:
        low, high = get_score(vos.SCORE).value_range
        checks.append(
            (
                low <= vos.OOD_THRESHOLD <= high,
                "VOS.OOD_THRESHOLD",
                f"is outside the range [{low:g}, {high:g}] of the {vos.SCORE} score (VOS.SCORE): "
                "no box could be flagged, or every box would be; take the threshold "
                "evaluation derived (ood_results.json, id_score_thresholds)",
            )
        )
    checks.append((cfg.SOLVER.MAX_ITER >= 1, "SOLVER.MAX_ITER", "must be >= 1"))
    for ok, key, requirement in checks:
        if not ok:
            raise ValueError(f"{key}={_value(cfg, key)!r} {requirement}")
    _check_feature_scores(cfg)


def _check_feature_scores(cfg: CN) -> None:
    """Raise ``ValueError`` when a configured score reads feature queues (or a feature head) the
    model cannot have, or when the queues can never hold VOS.KNN_K vectors for ``knn``."""
    heads = cfg.MODEL.ROI_HEADS.NAME
    capacity = cfg.MODEL.ROI_HEADS.NUM_CLASSES * cfg.VOS.QUEUE_SIZE
    for key in ("VOS.SCORE", "VOS.EVAL.SCORES"):
        value = _value(cfg, key)
        configured = [value] if isinstance(value, str) else value
        needing = scores_requiring("queues", configured)
        if needing and not _has_feature_queues(heads):
            raise ValueError(
                f"{key}={value!r}: {', '.join(needing)} read(s) the per-class feature queues, "
                f"which MODEL.ROI_HEADS.NAME={heads!r} does not have: set MODEL.ROI_HEADS.NAME "
                "'VOSROIHeads' (for weights trained with other heads, fit the statistics with "
                f"tools/fit_feature_statistics.py), or remove them from {key}."
            )
        if scores_requiring("feature_head", configured) and cfg.VOS.FEATURE_HEAD.HIDDEN_DIM == 0:
            raise ValueError(
                f"{key}={value!r}: the feature_head score needs the feature-space uncertainty "
                "head: set VOS.FEATURE_HEAD.HIDDEN_DIM > 0 (with VOS.ENABLED), or remove it "
                f"from {key}."
            )
        if "knn" in needing and cfg.VOS.KNN_K > capacity:
            raise ValueError(
                f"VOS.KNN_K={cfg.VOS.KNN_K!r} exceeds the {capacity} vectors the feature queues "
                "can hold (MODEL.ROI_HEADS.NUM_CLASSES x VOS.QUEUE_SIZE) for the knn score in "
                f"{key}: lower VOS.KNN_K or raise VOS.QUEUE_SIZE."
            )
        _check_crop_scores(cfg, key, value, scores_requiring("crop_features", configured))
        _check_layer_scores(cfg, key, value, scores_requiring("layer_features", configured))


_RESNET_BACKBONES = ("build_resnet_backbone", "build_resnet_fpn_backbone")


def _check_crop_scores(cfg: CN, key: str, value, needing) -> None:
    """Raise ``ValueError`` when the crop scores ``needing`` (configured in ``key``) cannot
    work: other heads than VOSROIHeads, a backbone that is not a ResNet, no pretrained weights
    for the crop encoder, or crop queues too small for ``crop_knn``."""
    if not needing:
        return
    crops = cfg.VOS.CROP_FEATURES
    problems = [
        (
            _has_feature_queues(cfg.MODEL.ROI_HEADS.NAME),
            f"need MODEL.ROI_HEADS.NAME 'VOSROIHeads' (got {cfg.MODEL.ROI_HEADS.NAME!r})",
        ),
        (
            cfg.MODEL.BACKBONE.NAME in _RESNET_BACKBONES,
            f"embed crops with a ResNet like the backbone, but MODEL.BACKBONE.NAME is "
            f"{cfg.MODEL.BACKBONE.NAME!r} (supported: {', '.join(_RESNET_BACKBONES)})",
        ),
        (
            bool(crops.WEIGHTS or cfg.MODEL.WEIGHTS),
            "embed crops with a pretrained ResNet: set MODEL.WEIGHTS or "
            "VOS.CROP_FEATURES.WEIGHTS to pretrained weights",
        ),
        (
            "crop_knn" not in needing
            or cfg.VOS.KNN_K <= cfg.MODEL.ROI_HEADS.NUM_CLASSES * crops.QUEUE_SIZE,
            f"crop_knn needs VOS.KNN_K={cfg.VOS.KNN_K} <= MODEL.ROI_HEADS.NUM_CLASSES x "
            "VOS.CROP_FEATURES.QUEUE_SIZE queued crop features",
        ),
    ]
    for ok, problem in problems:
        if not ok:
            raise ValueError(f"{key}={value!r}: {', '.join(needing)} {problem}.")


def _check_layer_scores(cfg: CN, key: str, value, needing) -> None:
    """Raise ``ValueError`` when the layer scores ``needing`` (configured in ``key``) cannot
    work: other heads than VOSROIHeads, or a one-layer score whose layer is not pooled. (Whether
    the backbone outputs the layers is checked when the heads are built.)"""
    if not needing:
        return
    if not _has_feature_queues(cfg.MODEL.ROI_HEADS.NAME):
        raise ValueError(
            f"{key}={value!r}: {', '.join(needing)} need MODEL.ROI_HEADS.NAME 'VOSROIHeads' "
            f"(got {cfg.MODEL.ROI_HEADS.NAME!r})."
        )
    layers = list(cfg.VOS.LAYER_FEATURES.IN_FEATURES)
    for score in needing:
        layer = score[len("layer_mahalanobis_") :] if score != "layer_mahalanobis" else None
        if layer is not None and layer not in layers:
            raise ValueError(
                f"{key}={value!r}: {score} reads the layer {layer!r}, which "
                f"VOS.LAYER_FEATURES.IN_FEATURES={layers!r} does not pool: add it there."
            )


def _has_feature_queues(roi_heads_name: str) -> bool:
    """Whether the registered ROI heads ``roi_heads_name`` keep feature queues when a configured
    score reads them: :class:`~vos_det.modeling.roi_heads.VOSROIHeads` and the heads derived from
    it, which carry ``has_vos_predictor``."""
    return roi_heads_name in ROI_HEADS_REGISTRY and getattr(
        ROI_HEADS_REGISTRY.get(roi_heads_name), "has_vos_predictor", False
    )


def _box_feature_dim(cfg: CN) -> Optional[int]:
    """D of the box head's output features for Detectron2's FastRCNNConvFCHead: the last FC
    layer's width, or the flattened conv output without FC layers; None for other heads."""
    head = cfg.MODEL.ROI_BOX_HEAD
    if head.NAME != "FastRCNNConvFCHead":
        return None
    if head.NUM_FC > 0:
        return head.FC_DIM
    channels = head.CONV_DIM if head.NUM_CONV > 0 else cfg.MODEL.FPN.OUT_CHANNELS
    return channels * head.POOLER_RESOLUTION**2


def _value(cfg: CN, key: str):
    """The value of the dotted ``key`` in ``cfg``."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value
