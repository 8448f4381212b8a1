"""The OOD evaluation protocol of the VOS paper, on per-box scores.

1. Pair the sets: one in-distribution (ID) set with ground truth, any number of OOD sets.
2. Choose the box-keeping threshold on the class probability: either fixed, or derived on the ID
   set (:func:`~vos_det.evaluation.box_matching.derive_score_threshold`).
3. Keep, on every set, the boxes whose class probability reaches the threshold; kept ID boxes are
   positives, kept OOD boxes negatives, and :func:`~vos_det.evaluation.ood_metrics` gives FPR95,
   AUROC and AUPR per OOD set and score (:func:`evaluate_ood_protocol`).

Both :class:`~vos_det.evaluation.OODEvaluation` (after inference) and ``tools/evaluate_ood.py``
(from saved scores) go through :func:`evaluate_ood_protocol`, so their tables are equal.
"""

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .box_matching import EmptyBoxSetError, ScoreThreshold
from .ood_metrics import fpr_key, id_threshold_at_tpr, ood_metrics
from .score_collector import BoxScores

__all__ = ["OODSetResult", "ProtocolResult", "evaluate_ood_protocol", "keep_boxes"]

logger = logging.getLogger(__name__)

ID_METRIC_NAMES = ("AP", "AP50", "AP75")


@dataclass
class OODSetResult:
    """The metrics of one OOD set against the ID set.

    Attributes:
        boxes (int): detections on the OOD set.
        kept (int): detections kept by the threshold.
        metrics (dict[str, dict[str, float]]): score name -> {"FPR95", "AUROC", "AUPR"} in
            percent (the FPR named after the TPR, :func:`fpr_key`); empty when no box was kept,
            and without the scores that are not finite on every kept box.
    """

    boxes: int
    kept: int
    metrics: Dict[str, Dict[str, float]]


@dataclass
class ProtocolResult:
    """Everything the OOD table of one run shows, as written to ``ood_results.json``.

    Attributes:
        id_dataset (str): the ID set.
        threshold (ScoreThreshold): the box-keeping threshold.
        tpr (float): the ID true-positive rate at which FPR is read.
        scores (list[str]): the compared scores.
        id_boxes (int): detections on the ID set.
        id_kept (int): ID detections kept by the threshold.
        id_metrics (dict[str, float]): COCO-style "AP", "AP50", "AP75" on the ID set (all
            detections); empty when unknown.
        ood (dict[str, OODSetResult]): per OOD set, in evaluation order.
        id_score_thresholds (dict[str, float]): per score, the value that ``tpr`` of the kept ID
            boxes reach (:func:`id_threshold_at_tpr`): boxes scoring below it are flagged OOD at
            that rate, e.g. by ``VOS.OOD_THRESHOLD``. Scores not finite on every kept ID box
            have none.
    """

    id_dataset: str
    threshold: ScoreThreshold
    tpr: float
    scores: List[str]
    id_boxes: int
    id_kept: int
    id_metrics: Dict[str, float]
    ood: Dict[str, OODSetResult]
    id_score_thresholds: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def fpr_key(self) -> str:
        """The name of the false-positive rate in ``metrics``, e.g. "FPR95"."""
        return fpr_key(self.tpr)

    def to_dict(self) -> dict:
        """Returns: a JSON-serialisable dict (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProtocolResult":
        """Rebuild a result written by :meth:`to_dict`.

        Args:
            data (Mapping): the dict, e.g. read from ``ood_results.json``.

        Returns:
            ProtocolResult: the result.
        """
        try:
            return cls(
                id_dataset=data["id_dataset"],
                threshold=ScoreThreshold(**data["threshold"]),
                tpr=float(data["tpr"]),
                scores=list(data["scores"]),
                id_boxes=int(data["id_boxes"]),
                id_kept=int(data["id_kept"]),
                id_metrics=dict(data["id_metrics"]),
                ood={name: OODSetResult(**entry) for name, entry in data["ood"].items()},
                id_score_thresholds=dict(data.get("id_score_thresholds", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"Not an OOD results dict as VOSTrainer.test writes it ({e!r}); expected the keys "
                f"{[f.name for f in dataclasses.fields(cls)]}."
            ) from e


def keep_boxes(box_scores: BoxScores, threshold: float) -> BoxScores:
    """Keep the boxes whose class probability reaches the threshold.

    Args:
        box_scores (BoxScores): per-box arrays of length N.
        threshold (float): minimum ``class_prob``.

    Returns:
        BoxScores: the same arrays restricted to the kept boxes.
    """
    kept = box_scores["class_prob"] >= threshold
    return {key: array[kept] for key, array in box_scores.items()}


def evaluate_ood_protocol(
    id_dataset: str,
    id_box_scores: BoxScores,
    ood_box_scores: Mapping[str, BoxScores],
    threshold: ScoreThreshold,
    scores: Sequence[str],
    tpr: float = 0.95,
    id_metrics: Optional[Mapping[str, float]] = None,
) -> ProtocolResult:
    """Compare the kept ID boxes with the kept boxes of every OOD set, for every score.

    An OOD set with no kept box gets no metrics, and a score that is NaN or infinite on some
    kept box gets no metrics on the sets where it is (a warning names the score, the set and the
    number of such boxes); every other score is evaluated as usual.

    Args:
        id_dataset (str): name of the ID set.
        id_box_scores (BoxScores): per-box arrays of the ID set.
        ood_box_scores (Mapping[str, BoxScores]): OOD set name -> its per-box arrays.
        threshold (ScoreThreshold): the box-keeping threshold.
        scores (Sequence[str]): names of the score arrays to compare (e.g. "vos", "energy").
        tpr (float): ID true-positive rate at which FPR is read.
        id_metrics (Mapping[str, float] or None): AP, AP50, AP75 of the ID set, carried along
            (NaN values, e.g. without any detection, are left out).

    Returns:
        ProtocolResult: the run's OOD results.

    Raises:
        EmptyBoxSetError: if no ID box is kept.
        KeyError: if a score is missing from the arrays.
    """
    for dataset, arrays in [(id_dataset, id_box_scores), *ood_box_scores.items()]:
        absent = [score for score in scores if score not in arrays]
        if absent:
            raise KeyError(f"The boxes of {dataset} have no score(s) {absent}.")
    id_kept = keep_boxes(id_box_scores, threshold.value)
    if len(id_kept["class_prob"]) == 0:
        raise EmptyBoxSetError(
            f"No box of the ID set {id_dataset} reaches the class probability threshold "
            f"{threshold.value:.4f} ({len(id_box_scores['class_prob'])} detections): the OOD "
            "metrics cannot be computed. Lower VOS.EVAL.SCORE_THRESHOLD (or --threshold), or "
            "train longer."
        )
    id_metrics = id_metrics or {}
    finite_scores = _scores_finite_on(id_dataset, id_kept, scores)
    ood_results = {}
    for name, arrays in ood_box_scores.items():
        kept = keep_boxes(arrays, threshold.value)
        num_kept = len(kept["class_prob"])
        if num_kept == 0:
            logger.warning(
                "No box of the OOD set %s reaches the class probability threshold %.4f (%d "
                "detections): no OOD metrics for it.",
                name,
                threshold.value,
                len(arrays["class_prob"]),
            )
        metrics = {}
        if num_kept:
            metrics = {
                score: ood_metrics(id_kept[score], kept[score], tpr)
                for score in _scores_finite_on(name, kept, finite_scores)
            }
        ood_results[name] = OODSetResult(len(arrays["class_prob"]), num_kept, metrics)
    return ProtocolResult(
        id_dataset=id_dataset,
        threshold=threshold,
        tpr=tpr,
        scores=list(scores),
        id_boxes=len(id_box_scores["class_prob"]),
        id_kept=len(id_kept["class_prob"]),
        id_metrics={
            key: float(id_metrics[key])
            for key in ID_METRIC_NAMES
            if key in id_metrics and math.isfinite(id_metrics[key])
        },
        ood=ood_results,
        id_score_thresholds={
            score: id_threshold_at_tpr(id_kept[score], tpr) for score in finite_scores
        },
    )


def _scores_finite_on(dataset: str, kept: BoxScores, scores: Sequence[str]) -> List[str]:
    """The scores that are finite on every kept box of a set; a warning names each other one.

    Args:
        dataset (str): the set's name, for the warning.
        kept (BoxScores): its kept boxes.
        scores (Sequence[str]): the score names to check.

    Returns:
        list[str]: the finite scores, in the given order.
    """
    finite = []
    for score in scores:
        bad = int(np.count_nonzero(~np.isfinite(kept[score])))
        if bad:
            logger.warning(
                "The %s score is NaN or infinite on %d of the %d kept boxes of %s: no OOD "
                "metrics for it there (the other scores are not affected).",
                score,
                bad,
                len(kept[score]),
                dataset,
            )
        else:
            finite.append(score)
    return finite
