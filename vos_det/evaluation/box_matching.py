"""Matching detections to ground truth, and the box-keeping threshold derived from it.

The OOD protocol keeps, on every set, the detections whose class probability reaches a
threshold, chosen on the ID set in one of two ways:

* :func:`paper_score_threshold` ("paper" protocol), as the VOS paper's released evaluation
  computes it: per class the score at the best F1 of COCOeval's precision/recall arrays averaged
  over IoU 0.50:0.95, averaged over the classes;
* :func:`derive_score_threshold` ("strict" protocol): per class the probability maximising the
  exact F1 against the ground truth (PASCAL VOC matching at IoU 0.5, :func:`match_detections`),
  averaged over the classes.
"""

import contextlib
import io
import logging
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .score_collector import BoxScores

__all__ = [
    "EmptyBoxSetError",
    "ScoreThreshold",
    "derive_score_threshold",
    "f1_optimal_thresholds",
    "match_detections",
    "pairwise_iou",
    "paper_score_threshold",
]

logger = logging.getLogger(__name__)


class EmptyBoxSetError(ValueError):
    """Raised when a box set the protocol cannot do without is empty (no metric is made up)."""


@dataclass
class ScoreThreshold:
    """The class probability a box needs to be kept.

    Attributes:
        value (float): the threshold; a box is kept when the protocol's probability (see
            :func:`~vos_det.evaluation.protocol.keep_boxes`) is ``>= value``.
        source (str): "paper_f1" (derived on the ID set by :func:`paper_score_threshold`), "f1"
            (derived by :func:`derive_score_threshold`) or "fixed" (given by the user).
        per_class (dict[str, float]): when derived, each contributing class's threshold.
    """

    value: float
    source: str
    per_class: Dict[str, float] = field(default_factory=dict)


def pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
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


def _image_indices(
    detections: BoxScores, ground_truth: Mapping[str, np.ndarray]
) -> Tuple[np.ndarray, np.ndarray]:
    """One integer per image, shared by detections and ground truth.

    Returns:
        tuple[np.ndarray, np.ndarray]: (N,) and (G,) int64 indices in ``[0, images)``.
    """
    num_detections = len(detections["image_id"])
    _, image_index = np.unique(
        np.concatenate([detections["image_id"], ground_truth["image_id"]]), return_inverse=True
    )
    image_index = image_index.reshape(-1).astype(np.int64)
    return image_index[:num_detections], image_index[num_detections:]


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
    det_image, gt_image = _image_indices(detections, ground_truth)
    image_index = np.concatenate([det_image, gt_image])
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
        iou = pairwise_iou(detections["box"][dets], ground_truth["box"][gts])
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
    """The "strict" box-keeping threshold: exact F1-optimal thresholds averaged over the classes.

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

    per_class = f1_optimal_thresholds(detections, ground_truth, iou_threshold)
    return _averaged_threshold(per_class, detections, ground_truth, class_names, "f1")


def _averaged_threshold(
    per_class: Mapping[int, float],
    detections: BoxScores,
    ground_truth: Mapping[str, np.ndarray],
    class_names: Optional[Sequence[str]],
    source: str,
) -> ScoreThreshold:
    """Average per-class thresholds; a warning names the ground-truth classes left out (those
    without detections).

    Args:
        per_class (Mapping[int, float]): class id -> threshold, for the contributing classes.
        detections (BoxScores): the ID-set detections, for the error message.
        ground_truth (Mapping[str, np.ndarray]): the ID-set ground truth ("class" (G,)).
        class_names (Sequence[str] or None): names of the class ids.
        source (str): the :attr:`ScoreThreshold.source`.

    Returns:
        ScoreThreshold: the mean of ``per_class``, with the per-class values by name.

    Raises:
        EmptyBoxSetError: if ``per_class`` is empty.
    """

    def name(cls: int) -> str:
        return class_names[cls] if class_names is not None else str(cls)

    if not per_class:
        raise EmptyBoxSetError(
            f"Cannot derive the box-keeping threshold: no class has both ground truth "
            f"({len(ground_truth['class'])} boxes) and detections ({len(detections['class_prob'])} "
            "boxes) on the ID set. Train longer, lower MODEL.ROI_HEADS.SCORE_THRESH_TEST, or set "
            "VOS.EVAL.SCORE_THRESHOLD to a fixed class probability."
        )
    missing = sorted(set(np.unique(ground_truth["class"]).tolist()) - set(per_class))
    if missing:
        logger.warning(
            "No detection of the class(es) %s on the ID set: left out of the averaged threshold.",
            ", ".join(name(cls) for cls in missing),
        )
    return ScoreThreshold(
        value=float(np.mean(list(per_class.values()))),
        source=source,
        per_class={name(cls): float(value) for cls, value in per_class.items()},
    )


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """Returns: (N, 4) float64 XYWH boxes of (N, 4) XYXY boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _coco_precision_and_scores(
    detections: BoxScores, ground_truth: Mapping[str, np.ndarray]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run COCOeval (bbox) and average its precision and score arrays over the IoU thresholds.

    The categories are the classes with ground truth; detections are scored by ``class_prob``.
    pycocotools' prints are silenced.

    Args:
        detections (BoxScores): "image_id" (N,), "box" (N, 4) XYXY, "pred_class" (N,),
            "class_prob" (N,); N >= 1.
        ground_truth (Mapping[str, np.ndarray]): "image_id" (G,), "box" (G, 4) XYXY, "class" (G,).

    Returns:
        tuple: ``precision`` (101, C) and ``scores`` (101, C), COCOeval's ``eval["precision"]``
        and ``eval["scores"]`` at area "all" and 100 detections per image averaged over the 10 IoU
        thresholds 0.50:0.95; ``recall`` (101,) the recall points; ``classes`` (C,) the class ids
        of the columns, increasing.
    """
    det_image, gt_image = _image_indices(detections, ground_truth)
    classes = np.unique(ground_truth["class"])
    gt_boxes = _xywh(ground_truth["box"])
    num_images = int(np.concatenate([det_image, gt_image]).max()) + 1
    coco_gt = COCO()
    coco_gt.dataset = {  # COCO ids from 1: image index + 1
        "images": [{"id": image + 1} for image in range(num_images)],
        "annotations": [
            {
                "id": index + 1,
                "image_id": int(image) + 1,
                "category_id": int(cls),
                "bbox": box.tolist(),
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            }
            for index, (image, cls, box) in enumerate(
                zip(gt_image, ground_truth["class"], gt_boxes)
            )
        ],
        "categories": [{"id": int(cls)} for cls in classes],
    }
    results = [
        {
            "image_id": int(image) + 1,
            "category_id": int(cls),
            "bbox": box.tolist(),
            "score": float(prob),
        }
        for image, cls, box, prob in zip(
            det_image, detections["pred_class"], _xywh(detections["box"]), detections["class_prob"]
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    params = evaluation.params
    area, max_dets = params.areaRngLbl.index("all"), params.maxDets.index(100)
    # (T IoU thresholds, 101 recall points, C classes, areas, max detections)
    precision = evaluation.eval["precision"][:, :, :, area, max_dets].mean(axis=0)
    scores = evaluation.eval["scores"][:, :, :, area, max_dets].mean(axis=0)
    return precision, scores, np.asarray(params.recThrs), classes


def paper_score_threshold(
    detections: BoxScores,
    ground_truth: Mapping[str, np.ndarray],
    class_names: Optional[Sequence[str]] = None,
) -> ScoreThreshold:
    """The box-keeping threshold as the VOS paper's released evaluation derives it.

    pycocotools' COCOeval evaluates the ID-set detections (scored by ``class_prob``) against the
    ground truth; its ``eval["precision"]`` and ``eval["scores"]`` arrays (101 recall points
    ``R``, area "all", 100 detections per image) are averaged over the 10 IoU thresholds
    0.50:0.95, giving per class ``P`` and ``S`` (101,). The class's threshold is ``S`` at the
    first maximum of ``F1 = 2 P R / (P + R)`` (0 where ``P + R = 0``); the threshold is the mean
    of the non-zero class thresholds. Classes without ground truth take no part; a class without
    any detection (threshold 0) is left out with a warning. A class with detections but no match
    at any IoU has F1 0 at every recall point: its threshold is then ``S`` at the first recall
    point, its best detection's probability, as the rule gives.

    Args:
        detections (BoxScores): ID-set detections ("image_id", "box", "pred_class",
            "class_prob").
        ground_truth (Mapping[str, np.ndarray]): ID-set ground truth ("image_id", "box",
            "class").
        class_names (Sequence[str] or None): names of the class ids, for the result and messages.

    Returns:
        ScoreThreshold: source "paper_f1", with the non-zero per-class thresholds.

    Raises:
        EmptyBoxSetError: if there is no detection or no ground truth, or every class threshold is
            0.
    """
    per_class = {}
    if len(detections["class_prob"]) and len(ground_truth["class"]):
        precision, scores, recall, classes = _coco_precision_and_scores(detections, ground_truth)
        denominator = precision + recall[:, None]
        f1 = np.divide(
            2 * precision * recall[:, None],
            denominator,
            out=np.zeros_like(precision),
            where=denominator > 0,
        )
        best = scores[np.argmax(f1, axis=0), np.arange(len(classes))]
        per_class = {int(cls): float(value) for cls, value in zip(classes, best) if value != 0}
    return _averaged_threshold(per_class, detections, ground_truth, class_names, "paper_f1")
