"""The open-set step of the evaluation: kept boxes of a mixed test set, flagged by each score at
its ID threshold, scored by :func:`~vos_det.core.open_set_metrics.open_set_metrics`.

A mixed (open-set) set holds known and unknown objects together (metadata
``evaluator_type="open_set"``, :mod:`vos_det.data.open_set_datasets`). Its detections are kept
by the protocol's box-keeping threshold, like every other set's; then, for each score, a kept
detection is flagged unknown when its score falls below the value that ``tpr`` of the kept ID
boxes reach (``ProtocolResult.id_score_thresholds``: the threshold a deployment would use, e.g.
``VOS.OOD_THRESHOLD``); a flagged box becomes a detection of "unknown", ranked by minus its score.
The row "no flag" is the detector without any score, for reference.
"""

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence

import numpy as np

from ..core.open_set_metrics import open_set_metrics
from .score_collector import BoxScores

__all__ = ["KNOWN_RECALL", "METRIC_HEADERS", "NO_FLAG", "OpenSetResult", "evaluate_open_set"]

#: The known recall at which the Wilderness Impact is read (OWOD's 0.8).
KNOWN_RECALL = 0.8

#: The row of the detector without an OOD flag.
NO_FLAG = "no flag"

#: Ground truth of an open-set set: "image_id" (G,), "box" (G, 4) float64 XYXY pixels, "class"
#: (G,) int64 (the ID class index, or ``num_known`` for an unknown object), "images" (I,) the id
#: of every image, "num_known" () int64 K.
OpenSetGroundTruth = Dict[str, np.ndarray]


@dataclass
class OpenSetResult:
    """The open-set metrics of one mixed set.

    Attributes:
        boxes (int): detections on the set.
        kept (int): detections kept by the box-keeping threshold.
        known_objects (int): known ground-truth objects.
        unknown_objects (int): unknown ground-truth objects.
        metrics (dict[str, dict[str, float]]): :data:`NO_FLAG` and every score -> the finite
            values of :func:`open_set_metrics` ("known_AP", "known_AP50", "unknown_AP50",
            "unknown_recall" in percent, "WI" a fraction, "A-OSE" a count,
            "A-OSE_per_100_unknown"); a score not finite on every kept box, or without an ID
            threshold, has no entry.
    """

    boxes: int
    kept: int
    known_objects: int
    unknown_objects: int
    metrics: Dict[str, Dict[str, float]]


#: The metrics a row keeps, with their table headers (the object counts are the result's own
#: attributes): APs and recall in percent, WI a fraction, A-OSE a count and per 100 unknowns.
METRIC_HEADERS = (
    ("known_AP", "known AP"),
    ("known_AP50", "known AP50"),
    ("unknown_AP50", "unknown AP50"),
    ("unknown_recall", "unknown recall"),
    ("WI", "WI"),
    ("A-OSE", "A-OSE"),
    ("A-OSE_per_100_unknown", "A-OSE /100 unknown"),
)


def evaluate_open_set(
    box_scores: BoxScores,
    kept: BoxScores,
    ground_truth: Mapping[str, np.ndarray],
    id_score_thresholds: Mapping[str, float],
    scores: Sequence[str],
) -> OpenSetResult:
    """The open-set metrics of every score (and of no flag) on one mixed set.

    Args:
        box_scores (BoxScores): every detection of the set (for the count).
        kept (BoxScores): the detections the protocol keeps.
        ground_truth (Mapping[str, np.ndarray]): :data:`OpenSetGroundTruth`.
        id_score_thresholds (Mapping[str, float]): score -> the value ``tpr`` of the kept ID
            boxes reach; boxes below it are flagged.
        scores (Sequence[str]): the scores to evaluate, finite on every kept box.

    Returns:
        OpenSetResult: the set's metrics.
    """
    num_known = int(ground_truth["num_known"])
    objects = {key: ground_truth[key] for key in ("image_id", "box", "class")}
    flags = {NO_FLAG: np.zeros(len(kept["class_prob"]), dtype=bool)}
    flags.update(
        {
            score: ~(kept[score] >= id_score_thresholds[score])
            for score in scores
            if score in id_score_thresholds
        }
    )
    metrics = {}
    for name, flagged in flags.items():
        confidence = -kept[name] if name != NO_FLAG else np.zeros(len(flagged))
        detections = {
            "image_id": kept["image_id"],
            "box": kept["box"].astype(np.float64),
            "pred_class": kept["pred_class"],
            "class_prob": kept["class_prob"].astype(np.float64),
            "flagged": flagged,
            "unknown_confidence": confidence.astype(np.float64),
        }
        values = open_set_metrics(
            detections, objects, num_known, ground_truth["images"], KNOWN_RECALL
        )
        metrics[name] = {
            key: float(values[key]) for key, _ in METRIC_HEADERS if math.isfinite(values[key])
        }
    unknown = int(np.count_nonzero(objects["class"] == num_known))
    return OpenSetResult(
        boxes=len(box_scores["class_prob"]),
        kept=len(kept["class_prob"]),
        known_objects=len(objects["class"]) - unknown,
        unknown_objects=unknown,
        metrics=metrics,
    )
