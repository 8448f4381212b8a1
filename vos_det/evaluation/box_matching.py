"""Matching detections to ground truth, and the box-keeping threshold derived from it.

The OOD protocol keeps, on every set, the detections whose class probability reaches a
threshold. :func:`derive_score_threshold` chooses it on the ID set the way the paper does: per
class the probability maximising F1 against the ground truth (PASCAL VOC matching at IoU 0.5,
:func:`match_detections`), averaged over the classes.
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .score_collector import BoxScores

__all__ = [
    "EmptyBoxSetError",
    "ScoreThreshold",
    "derive_score_threshold",
    "f1_optimal_thresholds",
    "match_detections",
]

logger = logging.getLogger(__name__)


class EmptyBoxSetError(ValueError):
    """Raised when a box set the protocol cannot do without is empty (no metric is made up)."""


@dataclass
class ScoreThreshold:
    """The class probability a box needs to be kept.

    Attributes:
        value (float): the threshold; boxes with ``class_prob >= value`` are kept.
        source (str): "f1" (derived on the ID set) or "fixed" (given by the user).
        per_class (dict[str, float]): with "f1", each contributing class's F1-optimal threshold.
    """

    value: float
    source: str
    per_class: Dict[str, float] = field(default_factory=dict)


def _pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Intersection over union of XYXY boxes (continuous coordinates, no +1).

    Args:
        boxes1 (np.ndarray): (N, 4) boxes.
        boxes2 (np.ndarray): (M, 4) boxes.

    Returns:
        np.ndarray: (N, M) IoU; 0 where both boxes are empty.
    """
    boxes1 = boxes1.astype(np.float64)
    boxes2 = boxes2.astype(np.float64)
    area1 = np.prod(np.clip(boxes1[:, 2:] - boxes1[:, :2], 0, None), axis=1)
    area2 = np.prod(np.clip(boxes2[:, 2:] - boxes2[:, :2], 0, None), axis=1)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area1[:, None] + area2[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(
    detections: BoxScores, ground_truth: Mapping[str, np.ndarray], iou_threshold: float = 0.5
) -> np.ndarray:
    """Mark each detection true or false positive, the way PASCAL VOC matches them.

    Per class and image, detections are visited by decreasing class probability (ties in their
    given order). A detection's candidate is the ground-truth box of its class in its image with
    the highest IoU; it is a true positive when that IoU is ``>= iou_threshold`` and the box is
    not matched yet (then it becomes matched), otherwise a false positive.

    Args:
        detections (BoxScores): "image_id" (N,), "box" (N, 4), "pred_class" (N,),
            "class_prob" (N,).
        ground_truth (Mapping[str, np.ndarray]): "image_id" (G,), "box" (G, 4), "class" (G,),
            as :func:`ground_truth_arrays` returns.
        iou_threshold (float): IoU needed for a match.

    Returns:
        np.ndarray: (N,) bool, True for true positives.
    """
    num_detections = len(detections["class_prob"])
    is_true_positive = np.zeros(num_detections, dtype=bool)
    if num_detections == 0 or len(ground_truth["class"]) == 0:
        return is_true_positive
    # One integer per image, shared by detections and ground truth.
    _, image_index = np.unique(
        np.concatenate([detections["image_id"], ground_truth["image_id"]]), return_inverse=True
    )
    det_image, gt_image = image_index[:num_detections], image_index[num_detections:]
    best_gt = np.full(num_detections, -1, dtype=np.int64)
    best_iou = np.full(num_detections, -1.0)
    det_order = np.argsort(det_image, kind="stable")
    gt_order = np.argsort(gt_image, kind="stable")
    bounds = np.arange(int(image_index.max()) + 2)
    det_starts = np.searchsorted(det_image[det_order], bounds)
    gt_starts = np.searchsorted(gt_image[gt_order], bounds)
    for image in range(len(bounds) - 1):
        dets = det_order[det_starts[image] : det_starts[image + 1]]
        gts = gt_order[gt_starts[image] : gt_starts[image + 1]]
        if len(dets) == 0 or len(gts) == 0:
            continue
        iou = _pairwise_iou(detections["box"][dets], ground_truth["box"][gts])
        other_class = detections["pred_class"][dets][:, None] != ground_truth["class"][gts][None]
        iou[other_class] = -1.0
        best = iou.argmax(axis=1)
        best_iou[dets] = iou[np.arange(len(dets)), best]
        best_gt[dets] = gts[best]
    matched = np.zeros(len(ground_truth["class"]), dtype=bool)
    by_score = np.argsort(-detections["class_prob"], kind="stable")
    for index in by_score[best_iou[by_score] >= iou_threshold].tolist():
        gt = best_gt[index]
        if not matched[gt]:
            matched[gt] = True
            is_true_positive[index] = True
    return is_true_positive


def f1_optimal_thresholds(
    detections: BoxScores, ground_truth: Mapping[str, np.ndarray], iou_threshold: float = 0.5
) -> Dict[int, float]:
    """Per class, the class-probability threshold maximising F1 of detections vs ground truth.

    Keeping the detections of class ``c`` with ``class_prob >= t`` gives ``TP(t)`` true
    positives (:func:`match_detections`) among ``D(t)`` detections, and
    ``F1(t) = 2 TP(t) / (D(t) + G_c)`` with ``G_c`` ground-truth boxes of class ``c``. The
    threshold is the detection probability maximising ``F1``; among equal maxima, the highest.

    Args:
        detections (BoxScores): "image_id" (N,), "box" (N, 4), "pred_class" (N,),
            "class_prob" (N,).
        ground_truth (Mapping[str, np.ndarray]): "image_id" (G,), "box" (G, 4), "class" (G,).
        iou_threshold (float): IoU needed for a true positive.

    Returns:
        dict[int, float]: class id -> threshold, for every class with ground truth and at least
        one detection (in increasing class id).
    """
    is_true_positive = match_detections(detections, ground_truth, iou_threshold)
    by_score = np.argsort(-detections["class_prob"], kind="stable")
    thresholds = {}
    for cls in np.unique(ground_truth["class"]).tolist():
        ranked = by_score[detections["pred_class"][by_score] == cls]
        if len(ranked) == 0:
            continue
        probs = detections["class_prob"][ranked]
        num_gt = int(np.count_nonzero(ground_truth["class"] == cls))
        true_positives = np.cumsum(is_true_positive[ranked])
        f1 = 2.0 * true_positives / (np.arange(1, len(ranked) + 1) + num_gt)
        # A threshold keeps all tied probabilities: only the last box of a tie is a cut point.
        cuts = np.flatnonzero(np.append(probs[1:] != probs[:-1], True))
        thresholds[cls] = float(probs[cuts[np.argmax(f1[cuts])]])
    return thresholds


def derive_score_threshold(
    detections: BoxScores,
    ground_truth: Mapping[str, np.ndarray],
    class_names: Optional[Sequence[str]] = None,
    iou_threshold: float = 0.5,
) -> ScoreThreshold:
    """The paper's box-keeping threshold: F1-optimal thresholds averaged over the classes.

    Classes with ground truth but no detection cannot have a threshold; they are left out of the
    average with a warning.

    Args:
        detections (BoxScores): ID-set detections ("image_id", "box", "pred_class",
            "class_prob").
        ground_truth (Mapping[str, np.ndarray]): ID-set ground truth ("image_id", "box",
            "class").
        class_names (Sequence[str] or None): names of the class ids, for the result and messages.
        iou_threshold (float): IoU needed for a true positive.

    Returns:
        ScoreThreshold: source "f1", with the per-class thresholds.

    Raises:
        EmptyBoxSetError: if no class has both ground truth and detections.
    """

    def name(cls: int) -> str:
        return class_names[cls] if class_names is not None else str(cls)

    per_class = f1_optimal_thresholds(detections, ground_truth, iou_threshold)
    missing = sorted(set(np.unique(ground_truth["class"]).tolist()) - set(per_class))
    if not per_class:
        raise EmptyBoxSetError(
            f"Cannot derive the box-keeping threshold: no class has both ground truth "
            f"({len(ground_truth['class'])} boxes) and detections ({len(detections['class_prob'])} "
            "boxes) on the ID set. Train longer, lower MODEL.ROI_HEADS.SCORE_THRESH_TEST, or set "
            "VOS.EVAL.SCORE_THRESHOLD to a fixed class probability."
        )
    if missing:
        logger.warning(
            "No detection of the class(es) %s on the ID set: left out of the averaged threshold.",
            ", ".join(name(cls) for cls in missing),
        )
    return ScoreThreshold(
        value=float(np.mean(list(per_class.values()))),
        source="f1",
        per_class={name(cls): value for cls, value in per_class.items()},
    )
