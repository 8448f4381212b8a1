"""The OOD evaluation protocol of the VOS paper, on per-box scores.

1. Pair the sets: one in-distribution (ID) set with ground truth, any number of OOD sets.
2. Choose the box-keeping threshold on the class probability: either fixed, or derived on the ID
   set (:func:`derive_threshold`).
3. Keep, on every set, the boxes whose probability reaches the threshold (:func:`keep_boxes`);
   kept ID boxes are positives, kept OOD boxes negatives, and
   :func:`~vos_det.core.ood_metrics` gives FPR95, AUROC and AUPR per OOD set and score
   (:func:`evaluate_ood_protocol`).
4. With mixed (open-set) sets: keep their boxes by the same rule, flag each kept box whose score
   falls below that score's ``id_score_thresholds`` value, and compute the open-set metrics
   (:mod:`vos_det.evaluation.open_set`).

Two protocols (``VOS.EVAL.PROTOCOL``, :data:`PROTOCOLS`) differ in three places:

============  =========================================  ======================================
step          "paper" (default: the paper's evaluation)  "strict"
============  =========================================  ======================================
threshold     COCOeval F1 over IoU 0.50:0.95             exact F1 at IoU 0.5
              (:func:`.paper_score_threshold`)           (:func:`.derive_score_threshold`)
kept boxes    the largest foreground probability of      the detection's own class probability
              the box's proposal (``max_class_prob``)    (``class_prob``)
FPR95         ROC point with the TPR closest to 95%      first ROC point with TPR >= 95%
============  =========================================  ======================================

AUROC, AUPR and ``id_score_thresholds`` are defined alike under both. The paper's tables rank a
VOS model by :data:`PAPER_SCORE`, the plain energy.

Both :class:`~vos_det.evaluation.OODEvaluation` (after inference) and ``tools/evaluate_ood.py``
(from saved scores) go through :func:`evaluate_ood_protocol`, so their tables are equal.
"""

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .box_matching import (
    EmptyBoxSetError,
    ScoreThreshold,
    derive_score_threshold,
    paper_score_threshold,
)
from ..core.ood_metrics import PROTOCOLS, check_protocol, fpr_key, id_threshold_at_tpr, ood_metrics
from .open_set import OpenSetResult, evaluate_open_set
from .score_collector import BoxScores

__all__ = [
    "KEEP_RULES",
    "PAPER_SCORE",
    "PROTOCOLS",
    "OODSetResult",
    "ProtocolResult",
    "derive_threshold",
    "evaluate_ood_protocol",
    "keep_boxes",
]

logger = logging.getLogger(__name__)

ID_METRIC_NAMES = ("AP", "AP50", "AP75")

#: The score the paper's tables use for VOS models: the plain energy (DESIGN.md).
PAPER_SCORE = "energy"

#: Per protocol: the per-box array that must reach the threshold, and what it is, for messages.
KEEP_RULES = {
    "paper": ("max_class_prob", "proposal's largest class probability"),
    "strict": ("class_prob", "class probability"),
}


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
        protocol (str): the protocol that produced the result, one of :data:`PROTOCOLS`.
        open_set (dict[str, OpenSetResult]): per mixed (open-set) set, in evaluation order.
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
    protocol: str = "paper"
    open_set: Dict[str, OpenSetResult] = dataclasses.field(default_factory=dict)

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
            data (Mapping): the dict, e.g. read from ``ood_results.json``; without "protocol"
                (written before there was a choice) it is a "strict" result.

        Returns:
            ProtocolResult: the result.

        Raises:
            ValueError: if a key is missing or the protocol is unknown.
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
                protocol=check_protocol(data.get("protocol", "strict")),
                open_set={
                    name: OpenSetResult(**entry) for name, entry in data.get("open_set", {}).items()
                },
            )
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"Not an OOD results dict as VOSTrainer.test writes it ({e!r}); expected the keys "
                f"{[f.name for f in dataclasses.fields(cls)]}."
            ) from e


def keep_boxes(box_scores: BoxScores, threshold: float, protocol: str) -> BoxScores:
    """Keep the boxes whose probability reaches the threshold, by the protocol's rule.

    "paper" keeps a detection when the largest foreground probability of its proposal
    (``max_class_prob``) reaches the threshold, so a proposal's detections of other classes
    count too; "strict" when its own class probability (``class_prob``) does (:data:`KEEP_RULES`).

    Args:
        box_scores (BoxScores): per-box arrays of length N, with the protocol's array.
        threshold (float): the probability a box needs.
        protocol (str): one of :data:`PROTOCOLS`.

    Returns:
        BoxScores: the same arrays restricted to the kept boxes.
    """
    kept = box_scores[KEEP_RULES[check_protocol(protocol)][0]] >= threshold
    return {key: array[kept] for key, array in box_scores.items()}


def derive_threshold(
    detections: BoxScores,
    ground_truth: Mapping[str, np.ndarray],
    protocol: str,
    class_names: Optional[Sequence[str]] = None,
) -> ScoreThreshold:
    """The box-keeping threshold derived on the ID set, by the protocol's rule.

    Args:
        detections (BoxScores): ID-set detections ("image_id", "box", "pred_class",
            "class_prob").
        ground_truth (Mapping[str, np.ndarray]): ID-set ground truth ("image_id", "box",
            "class").
        protocol (str): "paper" (:func:`.paper_score_threshold`, source "paper_f1") or "strict"
            (:func:`.derive_score_threshold`, source "f1").
        class_names (Sequence[str] or None): names of the class ids.

    Returns:
        ScoreThreshold: the derived threshold.

    Raises:
        EmptyBoxSetError: if no class has both ground truth and detections.
    """
    derive = {"paper": paper_score_threshold, "strict": derive_score_threshold}
    return derive[check_protocol(protocol)](detections, ground_truth, class_names)


def evaluate_ood_protocol(
    id_dataset: str,
    id_box_scores: BoxScores,
    ood_box_scores: Mapping[str, BoxScores],
    threshold: ScoreThreshold,
    scores: Sequence[str],
    tpr: float = 0.95,
    id_metrics: Optional[Mapping[str, float]] = None,
    protocol: str = "paper",
    open_sets: Optional[Mapping[str, Tuple[BoxScores, Mapping[str, np.ndarray]]]] = None,
) -> ProtocolResult:
    """Compare the kept ID boxes with the kept boxes of every OOD set, for every score, and
    evaluate every mixed set's kept boxes as an open-set detector's (:mod:`.open_set`).

    An OOD set with no kept box gets no metrics, and a score that is NaN or infinite on some
    kept box gets no metrics on the sets where it is (a warning names the score, the set and the
    number of such boxes); every other score is evaluated as usual. Without
    :data:`PAPER_SCORE` among the scores a warning says that the paper-comparable row is missing.

    Args:
        id_dataset (str): name of the ID set.
        id_box_scores (BoxScores): per-box arrays of the ID set.
        ood_box_scores (Mapping[str, BoxScores]): OOD set name -> its per-box arrays.
        threshold (ScoreThreshold): the box-keeping threshold.
        scores (Sequence[str]): names of the score arrays to compare (e.g. "vos", "energy").
        tpr (float): ID true-positive rate at which FPR is read.
        id_metrics (Mapping[str, float] or None): AP, AP50, AP75 of the ID set, carried along
            (NaN values, e.g. without any detection, are left out).
        protocol (str): which boxes are kept and how FPR is read, one of :data:`PROTOCOLS`.
        open_sets (Mapping or None): mixed set name -> (its per-box arrays, its ground truth
            :data:`~vos_det.evaluation.open_set.OpenSetGroundTruth`).

    Returns:
        ProtocolResult: the run's OOD results.

    Raises:
        EmptyBoxSetError: if no ID box is kept.
        KeyError: if a score is missing from the arrays.
        ValueError: if the protocol is unknown, or the arrays lack the one it keeps boxes by.
    """
    keep_field, keep_text = KEEP_RULES[check_protocol(protocol)]
    open_sets = dict(open_sets or {})
    named_arrays = [(id_dataset, id_box_scores), *ood_box_scores.items()]
    named_arrays += [(name, arrays) for name, (arrays, _) in open_sets.items()]
    for dataset, arrays in named_arrays:
        absent = [score for score in scores if score not in arrays]
        if absent:
            raise KeyError(f"The boxes of {dataset} have no score(s) {absent}.")
        if keep_field not in arrays:
            raise ValueError(
                f"The boxes of {dataset} have no {keep_field} (the {keep_text}), which the "
                f"{protocol} protocol keeps boxes by: they were saved by an older vos_det. "
                "Evaluate the model again, or use the strict protocol (VOS.EVAL.PROTOCOL strict, "
                "--protocol strict)."
            )
    if PAPER_SCORE not in scores:
        logger.warning(
            "The scores %s leave out %s, the score the paper's tables use: the OOD table has no "
            "paper-comparable row. Add it to VOS.EVAL.SCORES.",
            list(scores),
            PAPER_SCORE,
        )
    id_kept = keep_boxes(id_box_scores, threshold.value, protocol)
    if len(id_kept["class_prob"]) == 0:
        raise EmptyBoxSetError(
            f"No box of the ID set {id_dataset} reaches the threshold {threshold.value:.4f} on the "
            f"{keep_text} ({len(id_box_scores['class_prob'])} detections): the OOD metrics cannot "
            "be computed. Lower VOS.EVAL.SCORE_THRESHOLD (or --threshold), or train longer."
        )
    id_metrics = id_metrics or {}
    finite_scores = _scores_finite_on(id_dataset, id_kept, scores)
    ood_results = {}
    for name, arrays in ood_box_scores.items():
        kept = keep_boxes(arrays, threshold.value, protocol)
        num_kept = len(kept["class_prob"])
        if num_kept == 0:
            logger.warning(
                "No box of the OOD set %s reaches the threshold %.4f on the %s (%d detections): "
                "no OOD metrics for it.",
                name,
                threshold.value,
                keep_text,
                len(arrays["class_prob"]),
            )
        metrics = {}
        if num_kept:
            metrics = {
                score: ood_metrics(id_kept[score], kept[score], tpr, protocol)
                for score in _scores_finite_on(name, kept, finite_scores)
            }
        ood_results[name] = OODSetResult(len(arrays["class_prob"]), num_kept, metrics)
    id_score_thresholds = {
        score: id_threshold_at_tpr(id_kept[score], tpr) for score in finite_scores
    }
    open_set_results = {}
    for name, (arrays, ground_truth) in open_sets.items():
        kept = keep_boxes(arrays, threshold.value, protocol)
        open_set_results[name] = evaluate_open_set(
            arrays,
            kept,
            ground_truth,
            id_score_thresholds,
            _scores_finite_on(name, kept, finite_scores),
        )
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
        id_score_thresholds=id_score_thresholds,
        protocol=protocol,
        open_set=open_set_results,
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
