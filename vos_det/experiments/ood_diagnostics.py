"""Diagnostics that explain an OOD number (benchmark reports; not part of the protocol).

Given the boxes the protocol kept and the ground truth of both sets:

* :func:`unmatched_share`: the share of kept ID boxes that match no ground-truth box (duplicates,
  parts, background): positives that are not known objects;
* :func:`ood_class_breakdown`: every kept OOD box is assigned to the OOD object it covers (IoU
  >= 0.5 with an annotated object of the OOD set, e.g. "star") or to :data:`FRAGMENT` (it covers
  none: a part of an object, or clutter). Per such class and score: how many kept boxes, the
  share that passes as ID (score at or above the value 95% of kept ID boxes reach: the class's
  own FPR95), and as which ID class (the detector's predicted class) they pass.
"""

from typing import Dict, Mapping, Sequence

import numpy as np

from ..evaluation.box_matching import pairwise_iou
from ..evaluation.score_collector import BoxScores

__all__ = ["FRAGMENT", "assign_ood_classes", "ood_class_breakdown", "unmatched_share"]

#: The class of a kept OOD box that covers no annotated OOD object.
FRAGMENT = "fragment"


def _best_overlaps(boxes: BoxScores, ground_truth: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) index into ``ground_truth`` of each box's highest-IoU object of its image, -1 when
    that IoU is below 0.5 or the image has none."""
    best = np.full(len(boxes["box"]), -1, dtype=np.int64)
    for image_id in np.unique(boxes["image_id"]):
        rows = np.nonzero(boxes["image_id"] == image_id)[0]
        objects = np.nonzero(ground_truth["image_id"] == image_id)[0]
        if len(objects) == 0:
            continue
        iou = pairwise_iou(boxes["box"][rows], ground_truth["box"][objects])
        nearest = iou.argmax(axis=1)
        covered = iou[np.arange(len(rows)), nearest] >= 0.5
        best[rows[covered]] = objects[nearest[covered]]
    return best


def unmatched_share(kept_id: BoxScores, ground_truth: Mapping[str, np.ndarray]) -> float:
    """Share (percent) of kept ID boxes with IoU < 0.5 to every ground-truth box of their image
    (any class); NaN without kept boxes.

    Args:
        kept_id (BoxScores): the kept ID boxes ("image_id", "box").
        ground_truth (Mapping[str, np.ndarray]): the ID set's "image_id" (G,), "box" (G, 4).
    """
    if len(kept_id["box"]) == 0:
        return float("nan")
    return 100.0 * float(np.mean(_best_overlaps(kept_id, ground_truth) < 0))


def assign_ood_classes(
    kept_ood: BoxScores, ground_truth: Mapping[str, np.ndarray], class_names: Sequence[str]
) -> np.ndarray:
    """(N,) object class name of each kept OOD box, :data:`FRAGMENT` when it covers none.

    Args:
        kept_ood (BoxScores): kept OOD boxes ("image_id", "box").
        ground_truth (Mapping[str, np.ndarray]): the OOD set's objects: "image_id" (G,),
            "box" (G, 4), "class" (G,) indices into ``class_names``.
        class_names (Sequence[str]): names of the OOD set's object classes.
    """
    best = _best_overlaps(kept_ood, ground_truth)
    names = np.array(list(class_names) + [FRAGMENT], dtype=object)
    return names[np.where(best >= 0, ground_truth["class"][np.maximum(best, 0)], len(class_names))]


def ood_class_breakdown(
    kept_ood: BoxScores,
    ood_classes: np.ndarray,
    id_score_thresholds: Mapping[str, float],
    id_class_names: Sequence[str],
) -> Dict[str, Dict[str, dict]]:
    """Per score and OOD class: how many kept boxes, and how many pass as ID and as which class.

    Args:
        kept_ood (BoxScores): kept OOD boxes with "pred_class" and the scores.
        ood_classes (np.ndarray): (N,) their classes (:func:`assign_ood_classes`).
        id_score_thresholds (Mapping[str, float]): per score, the value that 95% (the protocol's
            TPR) of kept ID boxes reach; a box passes as ID when its score is at or above it.
        id_class_names (Sequence[str]): names of the detector's classes.

    Returns:
        dict: ``{score: {ood class: {"boxes": n, "passed": percent passing as ID (the class's
        FPR at the TPR), "as": {ID class: percent of the class's boxes passing as it}}}}``;
        classes in first-seen order of ``ood_classes``, then :data:`FRAGMENT`.
    """
    classes = [c for c in dict.fromkeys(ood_classes.tolist()) if c != FRAGMENT]
    classes += [FRAGMENT] if FRAGMENT in set(ood_classes.tolist()) else []
    breakdown = {}
    for score, threshold in id_score_thresholds.items():
        passes = np.asarray(kept_ood[score]) >= threshold
        per_class = {}
        for name in classes:
            rows = ood_classes == name
            count = int(rows.sum())
            predicted = kept_ood["pred_class"][rows & passes]
            per_class[name] = {
                "boxes": count,
                "passed": 100.0 * float(passes[rows].mean()),
                "as": {
                    id_name: 100.0 * float(np.sum(predicted == index)) / count
                    for index, id_name in enumerate(id_class_names)
                },
            }
        breakdown[score] = per_class
    return breakdown
