"""Scores on the detections of a box predictor: which proposal each detection came from, and
the score fields :class:`~vos_det.modeling.output_layers.VOSOutputLayers` attaches to them."""

from typing import Optional, Sequence

import torch
from detectron2.structures import Instances

from ..core.feature_statistics import MissingStatisticsError
from ..core.scores import ScoreInputs, compute_scores, score_field, scores_requiring

#: How a detector's queues get their statistics, added to the core's messages.
FILL_QUEUES = (
    "A detector's queues fill in training when a feature score is in VOS.SCORE or "
    "VOS.EVAL.SCORES (VOS.ENABLED or not); fit the statistics of trained weights with "
    "tools/fit_feature_statistics.py. VOS.KNN_K is the knn scores' k."
)

__all__ = ["attach_scores", "check_score_statistics", "proposal_rows"]


def proposal_rows(kept: torch.Tensor, logits: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Map NMS-kept indices to proposal rows.

    :func:`fast_rcnn_inference_single_image` drops proposals with non-finite boxes or scores
    before indexing, so its indices count finite rows only.

    Args:
        kept (Tensor): (R,) indices Detectron2's inference returned for one image.
        logits (Tensor): (P, K+1) the image's proposals' class logits.
        deltas (Tensor): (P, 4K) their box deltas.

    Returns:
        Tensor: (R,) rows into the image's proposals.
    """
    finite = torch.isfinite(logits).all(dim=1) & torch.isfinite(deltas).all(dim=1)
    if bool(finite.all()):
        return kept
    return finite.nonzero()[:, 0][kept]


def attach_scores(
    result: Instances,
    inputs: ScoreInputs,
    score_names: Sequence[str],
    score_name: str,
    ood_threshold: Optional[float],
) -> None:
    """Set one image's detection fields: ``fg_logits``, ``<name>_scores`` for every score of
    ``score_names``, ``id_scores`` (the score ``score_name``) and, with a threshold, ``is_ood``
    (True unless ``id_scores >= ood_threshold``, so a NaN score is never taken for known).

    Args:
        result (Instances): the image's R detections (modified in place).
        inputs (ScoreInputs): what the scores read about them.
        score_names (Sequence[str]): registered scores to attach (``score_name`` among them).
        score_name (str): the score of ``id_scores``.
        ood_threshold (float or None): the flag's threshold; None: no ``is_ood``.

    Raises:
        MissingStatisticsError: a score's queues lack vectors (the message says how to fill
            them).
    """
    result.fg_logits = inputs.fg_logits
    try:
        scores = compute_scores(score_names, inputs)
    except MissingStatisticsError as error:
        raise MissingStatisticsError(f"{error} {FILL_QUEUES}") from error
    for name, values in scores.items():
        result.set(score_field(name), values)
    result.id_scores = result.get(score_field(score_name))
    if ood_threshold is not None:
        result.is_ood = ~(result.id_scores >= ood_threshold)


def check_score_statistics(roi_heads, score_names: Sequence[str]) -> None:
    """Refuse, before any image is processed, scores whose class statistics a detector lacks.

    A feature score needs a class queue holding 2 vectors (a class Gaussian), ``knn`` and
    ``crop_knn`` ``knn_k`` queued vectors in all.

    Args:
        roi_heads (VOSROIHeads): the detector's ROI heads, their weights loaded (their box
            predictor keeps the box and crop queues, their ``layer_features`` the layer queues).
        score_names (Sequence[str]): the scores it will compute.

    Raises:
        MissingStatisticsError: naming the scores, the counts per class and what to do.
    """
    predictor = roi_heads.box_predictor
    layer_features = getattr(roi_heads, "layer_features", None)
    for requirement, queues, name in (
        ("queues", predictor.queues, "feature queues"),
        ("crop_features", predictor.crop_queues, "crop-feature queues"),
        ("layer_features", layer_features and layer_features.queues, "layer-feature queues"),
    ):
        needing = scores_requiring(requirement, score_names)
        if not needing:
            continue
        counts = queues.counts.tolist() if queues is not None else []
        enough = bool(counts) and max(counts) >= 2
        if any(score.endswith("knn") for score in needing):
            enough = enough and sum(counts) >= predictor.knn_k
        if not enough:
            raise MissingStatisticsError(
                f"The scores {', '.join(needing)} need class statistics, but the weights' {name} "
                f"hold {counts or 'no'} vectors per class. {FILL_QUEUES} Or choose scores that "
                "read only the logits (e.g. VOS.SCORE energy)."
            )
