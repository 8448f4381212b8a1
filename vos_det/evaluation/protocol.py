"""The OOD evaluation protocol of the VOS paper, on per-box scores.

1. Pair the sets: one in-distribution (ID) set with ground truth, any number of OOD sets
   (metadata ``is_ood=True``).
2. Choose the box-keeping threshold on the class probability: either fixed, or derived on the ID
   set (:func:`derive_score_threshold`: per class the threshold maximising F1 against the ground
   truth, averaged over the classes).
3. Keep, on every set, the boxes whose class probability reaches the threshold; kept ID boxes are
   positives, kept OOD boxes negatives, and :func:`~vos_det.evaluation.ood_metrics` gives FPR95,
   AUROC and AUPR per OOD set and score (:func:`evaluate_ood_protocol`).

Both :meth:`vos_det.engine.VOSTrainer.test` and ``tools/evaluate_ood.py`` go through these
functions, so a table recomputed from saved scores equals the one printed after inference.
"""

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode
from tabulate import tabulate

from .ood_evaluator import BoxScores
from .ood_metrics import ood_metrics

__all__ = [
    "EmptyBoxSetError",
    "OODSetResult",
    "ProtocolResult",
    "ScoreThreshold",
    "derive_score_threshold",
    "evaluate_ood_protocol",
    "f1_optimal_thresholds",
    "format_table",
    "ground_truth_arrays",
    "keep_boxes",
    "match_detections",
    "split_id_and_ood",
    "to_detectron2_results",
]

logger = logging.getLogger(__name__)

METRIC_NAMES = ("FPR95", "AUROC", "AUPR")
ID_METRIC_NAMES = ("AP", "AP50", "AP75")


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


@dataclass
class OODSetResult:
    """The metrics of one OOD set against the ID set.

    Attributes:
        boxes (int): detections on the OOD set.
        kept (int): detections kept by the threshold.
        metrics (dict[str, dict[str, float]]): score name -> {"FPR95", "AUROC", "AUPR"} in
            percent; empty when no box was kept.
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
    """

    id_dataset: str
    threshold: ScoreThreshold
    tpr: float
    scores: List[str]
    id_boxes: int
    id_kept: int
    id_metrics: Dict[str, float]
    ood: Dict[str, OODSetResult]

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
            )
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"Not an OOD results dict as VOSTrainer.test writes it ({e!r}); expected the keys "
                f"{[f.name for f in dataclasses.fields(cls)]}."
            ) from e


def split_id_and_ood(dataset_names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split test sets into ID sets and OOD sets by their metadata ``is_ood``.

    A set without ``is_ood`` (e.g. one registered by Detectron2 itself) counts as ID.

    Args:
        dataset_names (Sequence[str]): registered dataset names, e.g. ``cfg.DATASETS.TEST``.

    Returns:
        tuple[list[str], list[str]]: the ID sets and the OOD sets, each in the given order.

    Raises:
        ValueError: if there are OOD sets but not exactly one ID set to compare them with.
    """
    id_names, ood_names = [], []
    for name in dataset_names:
        is_ood = MetadataCatalog.get(name).get("is_ood", False)
        (ood_names if is_ood else id_names).append(name)
    if ood_names and len(id_names) != 1:
        raise ValueError(
            f"The OOD evaluation compares the OOD sets {ood_names} with exactly one ID set, but "
            f"DATASETS.TEST holds {len(id_names)} ID set(s) {id_names}. Put one ID set (metadata "
            "is_ood False, e.g. voc_2007_test) in DATASETS.TEST with the OOD sets."
        )
    return id_names, ood_names


def ground_truth_arrays(dataset_dicts: Iterable[dict]) -> Dict[str, np.ndarray]:
    """Collect the ground-truth boxes of Detectron2 dataset dicts (crowd boxes left out).

    Args:
        dataset_dicts (Iterable[dict]): records with "image_id" and "annotations" (each with
            "bbox", "bbox_mode", "category_id").

    Returns:
        dict[str, np.ndarray]: "image_id" (G,), "box" (G, 4) float64 XYXY absolute pixels,
        "class" (G,) int64 contiguous class ids.
    """
    image_ids, boxes, classes = [], [], []
    for record in dataset_dicts:
        for annotation in record.get("annotations", []):
            if annotation.get("iscrowd", 0):
                continue
            image_ids.append(record["image_id"])
            boxes.append(
                BoxMode.convert(annotation["bbox"], annotation["bbox_mode"], BoxMode.XYXY_ABS)
            )
            classes.append(annotation["category_id"])
    return {
        "image_id": np.asarray(image_ids),
        "box": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "class": np.asarray(classes, dtype=np.int64),
    }


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

    An OOD set with no kept box gets no metrics (a warning says so).

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
            metrics = {score: ood_metrics(id_kept[score], kept[score], tpr) for score in scores}
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
    )


def to_detectron2_results(result: ProtocolResult) -> Dict[str, Dict[str, Dict[str, float]]]:
    """The OOD results in Detectron2's form ``{dataset: {task: {metric: float}}}``.

    The ID set gets the task "ood_protocol" (threshold, boxes, kept boxes); every OOD set gets
    one task per score ({"FPR95", "AUROC", "AUPR"}) and "ood_protocol" (boxes, kept boxes).

    Args:
        result (ProtocolResult): a run's OOD results.

    Returns:
        dict: nested dicts of floats, accepted by ``print_csv_format`` and ``EvalHook``.
    """
    results = {
        result.id_dataset: {
            "ood_protocol": {
                "threshold": result.threshold.value,
                "boxes": float(result.id_boxes),
                "kept_boxes": float(result.id_kept),
            }
        }
    }
    for name, ood in result.ood.items():
        results[name] = {score: dict(metrics) for score, metrics in ood.metrics.items()}
        results[name]["ood_protocol"] = {"boxes": float(ood.boxes), "kept_boxes": float(ood.kept)}
    return results


def format_table(results: Mapping[str, ProtocolResult]) -> str:
    """Render one or several runs side by side.

    Two tables: per run the ID set, threshold, kept/all ID boxes and AP/AP50/AP75; then one row
    per OOD set and score with FPR95/AUROC/AUPR (in percent) of each run; "-" where a run has no
    value.

    Args:
        results (Mapping[str, ProtocolResult]): run name -> its results (one run: no run names
            in the headers).

    Returns:
        str: the tables, in Markdown pipe format.
    """
    runs = list(results)
    run_column = ["run"] if len(runs) > 1 else []
    id_rows = []
    for run, result in results.items():
        row = [result.id_dataset, result.threshold.value, f"{result.id_kept}/{result.id_boxes}"]
        row += [result.id_metrics.get(key) for key in ID_METRIC_NAMES]
        id_rows.append(([run] if run_column else []) + row)
    id_table = tabulate(
        id_rows,
        headers=run_column + ["ID set", "threshold", "ID boxes kept", *ID_METRIC_NAMES],
        tablefmt="pipe",
        floatfmt=[".4f"] * (len(run_column) + 2) + [".2f"] * (1 + len(ID_METRIC_NAMES)),
        missingval="-",
    )
    row_keys = []  # (OOD set, score), first-seen order over the runs
    for result in results.values():
        for name in result.ood:
            row_keys += [(name, score) for score in result.scores if (name, score) not in row_keys]
    ood_rows = []
    for name, score in row_keys:
        row = [name, score]
        for result in results.values():
            metrics = result.ood[name].metrics.get(score, {}) if name in result.ood else {}
            row += [metrics.get(key) for key in METRIC_NAMES]
        ood_rows.append(row)
    metric_headers = [
        f"{run} {key}" if len(runs) > 1 else key for run in runs for key in METRIC_NAMES
    ]
    ood_table = tabulate(
        ood_rows,
        headers=["OOD set", "score", *metric_headers],
        tablefmt="pipe",
        floatfmt=".2f",
        missingval="-",
    )
    return f"{id_table}\n\n{ood_table}"
