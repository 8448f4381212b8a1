"""Open-set detection metrics: known AP, unknown AP and recall, Wilderness Impact and A-OSE.

Setting: test images hold known objects (classes ``0..K-1``) and unknown objects (ground-truth
class ``K``). The detector predicts only known classes; an OOD score flags some detections as
"unknown". :func:`open_set_metrics` reports, as open-world detection papers do (OWOD, Joseph et
al., CVPR 2021; OpenDet, Han et al., CVPR 2022):

* ``known_AP`` / ``known_AP50`` (percent, higher is better): COCO box AP (mean over IoU
  0.50:0.05:0.95, and at 0.50) of the unflagged detections over the known classes, against the
  known ground truth only: a known-labelled box on an unknown object is a false positive. It is
  pycocotools' ``COCOeval`` (iouType "bbox", area "all", maxDets 100), reimplemented: classes
  without ground truth are left out of the mean, classes with ground truth but no detection
  count 0. ``known_AP_all`` / ``known_AP50_all``: the same over every detection, flagged or
  not (the detector without the OOD flag); flagging a box on an unknown object removes a known
  false positive, flagging a known object removes a true positive.
* ``unknown_AP50`` (percent, higher is better): class-agnostic COCO AP at IoU 0.5 of the
  flagged detections, ranked by ``unknown_confidence``, against the unknown objects.
  ``unknown_recall`` (percent): the share of unknown objects matched (COCO matching, IoU >=
  ``iou_threshold``) by a flagged detection.
* ``WI`` (Wilderness Impact, a fraction as OWOD reports it; lower is better): the relative drop
  of known precision that the unknowns cause, at known recall ``known_recall``. Per known class
  ``c`` with unflagged detections, ranked by ``class_prob`` and matched OWOD/VOC style (IoU >
  ``iou_threshold``) to the known objects of ``c``: at the first rank ``i`` whose recall is
  closest to ``known_recall`` (rank 0 when ``c`` has no object: OWOD's recall is NaN there),
  ``n_c = i + 1`` detections are closed-set TP + FP (each is one of the two) and ``u_c`` of them
  overlap an unknown object with IoU > ``iou_threshold`` (open-set false positives, true
  positives included, as in OWOD). ``WI = mean_c(u_c) / mean_c(n_c)`` (``u_c / n_c = 1 - P / P'``,
  ``P'`` the precision without those boxes), 0 when no class has a detection (as OWOD). This is
  ``compute_WI_at_a_recall_level`` on ``voc_eval``'s ``tp_plus_fp_closed_set`` and
  ``fp_open_set`` in JosephKJ/OWOD ``detectron2/evaluation/pascal_voc_evaluation.py`` (also
  csuhan/opendet2, which prints 100 * WI). Departures: IoU on continuous coordinates (OWOD adds
  one pixel to widths), no VOC "difficult" objects, exact scores (OWOD rounds them to 3 decimals),
  the tie order below (OWOD's quicksort leaves it unspecified).
* ``A-OSE`` (absolute open-set error, a count; lower is better): the number of unflagged
  detections (known-labelled) whose IoU with some unknown object of their image exceeds
  ``iou_threshold``: detections, not objects, so two boxes on one unknown count twice; no score
  cut beyond the caller's (OWOD's ``is_unk`` summed over the known classes, on the boxes its
  model keeps at test time).
  ``A-OSE_per_100_unknown = 100 * A-OSE / unknown_objects`` (NaN without unknown objects).

Matching: COCO (the APs, ``unknown_recall``) gives each detection the unmatched object of highest
IoU >= the threshold (the last such object on equal IoU, as ``COCOeval``), after keeping the
``max_detections`` best detections per image and class. OWOD (WI) takes the object of highest
IoU (the first on equal IoU); above the threshold it is a TP unless already matched, then a FP.

Ranking: by descending score, equal scores by image (sorted ``image_ids``), then input order:
the order of ``COCOeval``'s stable sorts.
"""

from functools import partial
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["COCO_IOU_THRESHOLDS", "box_iou", "open_set_metrics"]

#: IoU thresholds of COCO AP, 0.50:0.05:0.95, built as pycocotools builds them.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
#: The 101 recall points of COCO's interpolated precision.
_RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)
_DETECTION_FIELDS = ("image_id", "box", "pred_class", "class_prob", "flagged", "unknown_confidence")
_GROUND_TRUTH_FIELDS = ("image_id", "box", "class")
#: A matcher: (n, m) IoU of one image's ranked detections with its objects -> (n,) bool hits.
Matcher = Callable[[np.ndarray], np.ndarray]


def open_set_metrics(
    detections: Mapping[str, np.ndarray],
    ground_truth: Mapping[str, np.ndarray],
    num_known: int,
    image_ids: Sequence,
    known_recall: float = 0.8,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> Dict[str, float]:
    """Known AP, unknown AP50 and recall, WI and A-OSE of one test set (see the module docstring).

    Args:
        detections: ``D`` detections: "image_id" (D,) int or str; "box" (D, 4) XYXY pixels;
            "pred_class" (D,) int in [0, K); "class_prob" (D,) confidence of the class;
            "flagged" (D,) bool, flagged as unknown; "unknown_confidence" (D,) ranks the flagged
            boxes as unknown detections (higher = more surely unknown; finite where flagged).
        ground_truth: ``G`` objects: "image_id" (G,), "box" (G, 4) XYXY, "class" (G,) int in
            [0, K], ``K`` meaning unknown.
        num_known (int): K, the number of known classes.
        image_ids (Sequence): every image of the set, with or without objects or detections.
        known_recall (float): the known recall, in (0, 1], at which WI is read.
        iou_threshold (float): IoU threshold of WI, A-OSE (IoU > it) and ``unknown_recall``
            (IoU >= it), in (0, 1). The APs use their own fixed thresholds.
        max_detections (int): COCO's maxDets, detections kept per image and class for the APs
            and ``unknown_recall``.

    Returns:
        dict: "known_AP", "known_AP50", "known_AP_all", "known_AP50_all", "unknown_AP50",
        "unknown_recall" (percent; NaN without objects to find), "WI" (fraction), "A-OSE"
        (count), "A-OSE_per_100_unknown", "unknown_objects", "known_objects" (counts).

    Raises:
        ValueError: naming the field or argument that is missing, mis-shaped or out of range.
    """
    _check_arguments(num_known, known_recall, iou_threshold, max_detections)
    det, gt = _validated(detections, ground_truth, num_known, image_ids)
    flagged, unknown = det["flagged"], gt["class"] == num_known
    known_det, known_gt = _subset(det, ~flagged), _subset(gt, ~unknown)
    known_ap = _known_ap(known_det, known_gt, num_known, max_detections)
    known_ap_all = _known_ap(det, known_gt, num_known, max_detections)
    unknown_ap, unknown_recall = _unknown_ap_and_recall(
        _subset(det, flagged), _subset(gt, unknown), iou_threshold, max_detections
    )
    wi = _wilderness_impact(known_det, gt, num_known, known_recall, iou_threshold)
    a_ose = _absolute_open_set_error(known_det, _subset(gt, unknown), iou_threshold)
    n_unknown = int(unknown.sum())
    return {
        "known_AP": known_ap[0],
        "known_AP50": known_ap[1],
        "known_AP_all": known_ap_all[0],
        "known_AP50_all": known_ap_all[1],
        "unknown_AP50": unknown_ap,
        "unknown_recall": unknown_recall,
        "WI": wi,
        "A-OSE": a_ose,
        "A-OSE_per_100_unknown": 100.0 * a_ose / n_unknown if n_unknown else float("nan"),
        "unknown_objects": float(n_unknown),
        "known_objects": float(len(known_gt["box"])),
    }


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes on continuous coordinates (width ``x2 - x1``), as pycocotools' bbIou.

    Args:
        boxes (np.ndarray): (n, 4) XYXY boxes.
        others (np.ndarray): (m, 4) XYXY boxes.

    Returns:
        np.ndarray: (n, m) IoU in [0, 1]; 0 where the boxes do not overlap.
    """
    x, y, w, h = (v[:, None] for v in _xywh(boxes))
    ox, oy, ow, oh = _xywh(others)
    # pycocotools' arithmetic on (x, y, w, h): the right edge is x + w.
    iw = np.minimum(x + w, ox + ow) - np.maximum(x, ox)
    ih = np.minimum(y + h, oy + oh) - np.maximum(y, oy)
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    union = w * h + ow * oh - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap)


def _xywh(boxes: np.ndarray) -> Tuple[np.ndarray, ...]:
    """(n,) x, y, width, height of (n, 4) XYXY boxes."""
    return boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def _validated(
    detections: Mapping, ground_truth: Mapping, num_known: int, image_ids: Sequence
) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Checked copies of the fields, plus "image": (N,) rank of the image in sorted image_ids."""
    det = _checked_fields("detections", detections, _DETECTION_FIELDS)
    gt = _checked_fields("ground_truth", ground_truth, _GROUND_TRUTH_FIELDS)
    _check_classes("detections", "pred_class", det["pred_class"], num_known)
    _check_classes("ground_truth", "class", gt["class"], num_known + 1)
    det["flagged"] = _checked_flags(det["flagged"])
    _check_finite("detections", "class_prob", det["class_prob"])
    _check_finite("detections", "unknown_confidence", det["unknown_confidence"][det["flagged"]])
    universe = np.unique(np.asarray(image_ids))
    det["image"] = _image_ranks("detections", det["image_id"], universe)
    gt["image"] = _image_ranks("ground_truth", gt["image_id"], universe)
    return det, gt


def _subset(fields: Dict[str, np.ndarray], mask: np.ndarray) -> Dict[str, np.ndarray]:
    """The rows of every field where ``mask`` holds."""
    return {key: value[mask] for key, value in fields.items()}


def _check_arguments(
    num_known: int, known_recall: float, iou_threshold: float, max_detections: int
) -> None:
    """Raise ValueError naming the first scalar argument out of its range."""
    integers = (int, np.integer)
    checks = (
        ("num_known", isinstance(num_known, integers) and num_known >= 1, num_known),
        ("known_recall", 0.0 < known_recall <= 1.0, known_recall),
        ("iou_threshold", 0.0 < iou_threshold < 1.0, iou_threshold),
        ("max_detections", isinstance(max_detections, integers) and max_detections >= 1,
         max_detections),
    )
    for name, valid, value in checks:
        if not valid:
            raise ValueError(f"{name} is out of range, got {value!r}")


def _checked_fields(name: str, fields: Mapping, keys: Sequence[str]) -> Dict[str, np.ndarray]:
    """The arrays of ``keys``, boxes as (N, 4) float64; raise on a missing or mis-shaped one."""
    missing = [key for key in keys if key not in fields]
    if missing:
        raise ValueError(f"{name} lacks the field(s) {', '.join(missing)}")
    arrays = {key: np.asarray(fields[key]) for key in keys}
    boxes = arrays["box"].reshape(0, 4) if arrays["box"].size == 0 else arrays["box"]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'{name}["box"] must have shape (N, 4), got {arrays["box"].shape}')
    boxes = boxes.astype(np.float64)
    if not np.isfinite(boxes).all():
        raise ValueError(f'{name}["box"] has non-finite coordinates')
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError(f'{name}["box"] must be XYXY with x2 >= x1 and y2 >= y1')
    arrays["box"] = boxes
    for key in keys:
        if arrays[key].shape[:1] != (len(boxes),) or arrays[key].ndim != (2 if key == "box" else 1):
            raise ValueError(
                f'{name}["{key}"] has shape {arrays[key].shape}, but {name}["box"] holds '
                f"{len(boxes)} boxes: the lengths must match"
            )
    return arrays


def _check_classes(name: str, key: str, classes: np.ndarray, upper: int) -> None:
    """Raise unless ``classes`` are integers in ``[0, upper)``."""
    if classes.size and not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f'{name}["{key}"] must hold integers, got dtype {classes.dtype}')
    if classes.size and (classes.min() < 0 or classes.max() >= upper):
        low, high = classes.min(), classes.max()
        raise ValueError(f'{name}["{key}"] must lie in [0, {upper}), got [{low}, {high}]')


def _checked_flags(flags: np.ndarray) -> np.ndarray:
    """(D,) ``flags`` as bool; raise unless they are bool or 0/1."""
    if flags.dtype != bool and not (flags.size == 0 or np.isin(flags, (0, 1)).all()):
        raise ValueError('detections["flagged"] must be bool (or 0/1)')
    return flags.astype(bool)


def _check_finite(name: str, key: str, values: np.ndarray) -> None:
    """Raise unless ``values`` are finite numbers."""
    numeric = np.issubdtype(values.dtype, np.number)
    if values.size and not (numeric and np.isfinite(values).all()):
        raise ValueError(f'{name}["{key}"] must hold finite numbers')


def _image_ranks(name: str, ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """(N,) rank of each of ``ids`` in the sorted unique ``universe``; raise on a stranger."""
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    numeric = [np.issubdtype(a.dtype, np.integer) for a in (ids, universe)]
    if universe.size == 0 or numeric[0] != numeric[1]:
        raise ValueError(f'{name}["image_id"] must be of the kind (int or str) of image_ids')
    ranks = np.minimum(np.searchsorted(universe, ids), len(universe) - 1)
    strangers = universe[ranks] != ids
    if strangers.any():
        raise ValueError(f'{name}["image_id"] {ids[strangers][0]!r} is not in image_ids')
    return ranks


def _ranked(scores: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Indices by descending score, then ascending image rank, then input order."""
    return np.lexsort((np.arange(len(scores)), image, -scores))


def _groups(labels: np.ndarray) -> Dict[int, np.ndarray]:
    """Label -> ascending indices carrying it."""
    order = np.argsort(labels, kind="mergesort")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return {int(labels[g[0]]): g for g in np.split(order, bounds) if g.size}


def _ranked_hits(
    det: Dict[str, np.ndarray], score: str, gt: Dict[str, np.ndarray],
    matchers: Sequence[Matcher], max_per_image: Optional[int] = None,
) -> np.ndarray:
    """Rank detections by ``det[score]`` (:func:`_ranked`), keep ``max_per_image`` per image,
    run each matcher on each image's IoU with the objects ``gt`` of that image.

    Returns:
        np.ndarray: (len(matchers), kept) bool, what each matcher found, in ranked order.
    """
    order = _ranked(det[score], det["image"])
    ranked_image, ranked_boxes = det["image"][order], det["box"][order]
    keep = np.ones(len(order), dtype=bool)
    hits = np.zeros((len(matchers), len(order)), dtype=bool)
    objects = _groups(gt["image"])
    for image, cols in _groups(ranked_image).items():
        if max_per_image is not None:
            keep[cols[max_per_image:]] = False
            cols = cols[:max_per_image]
        if image in objects:
            iou = box_iou(ranked_boxes[cols], gt["box"][objects[image]])
            for k, match in enumerate(matchers):
                hits[k, cols] = match(iou)
    return hits[:, keep]


def _coco_greedy(iou: np.ndarray, threshold: float) -> np.ndarray:
    """COCO matching: each detection takes the unmatched object of highest IoU >= threshold."""
    threshold = min(threshold, 1 - 1e-10)
    taken = np.zeros(iou.shape[1], dtype=bool)
    hits = np.zeros(iou.shape[0], dtype=bool)
    for d, row in enumerate(iou):
        candidates = np.where(~taken & (row >= threshold), row, -1.0)  # COCOeval's IoU >= t
        if candidates.max() >= 0:
            best = len(row) - 1 - np.argmax(candidates[::-1])  # the last of equal IoU
            taken[best] = hits[d] = True
    return hits


def _owod_greedy(iou: np.ndarray, threshold: float) -> np.ndarray:
    """OWOD/VOC matching: the object of highest IoU (first on ties), if > threshold and free."""
    taken = np.zeros(iou.shape[1], dtype=bool)
    hits = np.zeros(iou.shape[0], dtype=bool)
    for d, row in enumerate(iou):
        best = np.argmax(row)
        if row[best] > threshold and not taken[best]:
            taken[best] = hits[d] = True
    return hits


def _overlaps_any(iou: np.ndarray, threshold: float) -> np.ndarray:
    """(n,) whether each detection overlaps some object with IoU > threshold (OWOD's is_unk)."""
    return iou.max(axis=1) > threshold


def _coco_ap(hits: np.ndarray, num_objects: int) -> float:
    """COCO's 101-point interpolated AP (a fraction) of ranked (n,) hits, num_objects > 0."""
    tp, fp = np.cumsum(hits).astype(float), np.cumsum(~hits).astype(float)
    recall = tp / num_objects
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, _RECALL_POINTS, side="left")
    reached = at < len(hits)  # recall points past the last detection's recall score 0
    interpolated = np.zeros(len(_RECALL_POINTS))
    interpolated[reached] = precision[at[reached]]
    return float(interpolated.mean())


def _known_ap(
    det: Dict[str, np.ndarray], gt: Dict[str, np.ndarray], num_known: int, max_detections: int
) -> Tuple[float, float]:
    """(AP, AP50), percent, of ``det`` over the known classes with objects in ``gt``; else NaN."""
    matchers = [partial(_coco_greedy, threshold=t) for t in COCO_IOU_THRESHOLDS]
    per_class: List[List[float]] = []
    for c in range(num_known):
        objects = gt["class"] == c
        if objects.any():
            mine = _subset(det, det["pred_class"] == c)
            hits = _ranked_hits(mine, "class_prob", _subset(gt, objects), matchers, max_detections)
            per_class.append([_coco_ap(h, int(objects.sum())) for h in hits])
    if not per_class:
        return float("nan"), float("nan")
    ap = np.asarray(per_class)
    return 100.0 * float(ap.mean()), 100.0 * float(ap[:, 0].mean())


def _unknown_ap_and_recall(
    flagged: Dict[str, np.ndarray], unknown: Dict[str, np.ndarray], iou: float, max_dets: int
) -> Tuple[float, float]:
    """(AP50, recall at IoU ``iou``), percent, of the flagged detections; NaN without unknowns."""
    n = len(unknown["box"])
    if n == 0:
        return float("nan"), float("nan")
    matchers = [partial(_coco_greedy, threshold=t) for t in (0.5, iou)]
    hits = _ranked_hits(flagged, "unknown_confidence", unknown, matchers, max_dets)
    return 100.0 * _coco_ap(hits[0], n), 100.0 * float(hits[1].sum()) / n


def _absolute_open_set_error(
    det: Dict[str, np.ndarray], unknown: Dict[str, np.ndarray], iou_threshold: float
) -> float:
    """A-OSE: how many of the unflagged ``det`` overlap an ``unknown`` object, IoU > threshold."""
    is_unknown = partial(_overlaps_any, threshold=iou_threshold)
    return float(_ranked_hits(det, "class_prob", unknown, [is_unknown])[0].sum())


def _closest_recall_index(hits: np.ndarray, num_objects: int, known_recall: float) -> int:
    """First rank whose recall is closest to ``known_recall``; 0 without objects (as OWOD)."""
    if num_objects == 0:
        return 0
    recall = np.cumsum(hits) / float(num_objects)
    return int(np.argmin(np.abs(recall - known_recall)))


def _wilderness_impact(
    det: Dict[str, np.ndarray], gt: Dict[str, np.ndarray], num_known: int, known_recall: float,
    iou_threshold: float,
) -> float:
    """OWOD's WI (a fraction) of the unflagged ``det``; 0 when no known class has one."""
    unknown = _subset(gt, gt["class"] == num_known)
    is_tp = partial(_owod_greedy, threshold=iou_threshold)
    is_unknown = partial(_overlaps_any, threshold=iou_threshold)
    closed_set, open_set = [], []
    for c in range(num_known):
        mine = _subset(det, det["pred_class"] == c)
        if len(mine["box"]) == 0:
            continue
        objects = _subset(gt, gt["class"] == c)
        tp = _ranked_hits(mine, "class_prob", objects, [is_tp])[0]
        on_unknown = _ranked_hits(mine, "class_prob", unknown, [is_unknown])[0]
        index = _closest_recall_index(tp, len(objects["box"]), known_recall)
        closed_set.append(index + 1)  # TP + FP down to the index: each detection is one of them
        open_set.append(int(on_unknown[: index + 1].sum()))
    return float(np.mean(open_set) / np.mean(closed_set)) if closed_set else 0.0
