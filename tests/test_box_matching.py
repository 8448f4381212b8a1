"""vos_det.evaluation.box_matching: VOC matching of detections and the F1-optimal thresholds of
both protocols ("strict": exact F1 at IoU 0.5; "paper": from COCOeval's arrays)."""

import contextlib
import io
import logging

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vos_det.evaluation.box_matching import (
    EmptyBoxSetError,
    derive_score_threshold,
    f1_optimal_thresholds,
    match_detections,
    paper_score_threshold,
)


def _boxes(*rows):
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


@pytest.fixture
def hand_case():
    """3 images; class 0 (3 GT), class 1 (1 GT), class 2 (1 GT, never detected), class 3
    (detected, no GT)."""
    ground_truth = {
        "image_id": np.array([1, 1, 2, 2, 3]),
        "box": _boxes(
            [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]
        ),
        "class": np.array([0, 1, 0, 0, 2]),
    }
    rows = [  # image, box, class, probability, true positive?
        (1, [0, 0, 10, 10], 0, 0.9, True),
        (1, [1, 1, 10, 10], 0, 0.8, False),  # duplicate of a matched box
        (2, [0, 0, 10, 10], 0, 0.7, True),
        (2, [30, 30, 40, 40], 0, 0.6, False),  # no overlap
        (2, [50, 50, 60, 61], 0, 0.3, True),  # IoU 100/110
        (1, [0, 0, 10, 10], 1, 0.55, False),  # on a box of another class
        (1, [20, 20, 30, 30], 1, 0.5, True),
        (2, [20, 20, 30, 30], 1, 0.5, False),  # tie; no class-1 box on image 2
        (3, [0, 0, 10, 10], 1, 0.4, False),
        (1, [0, 0, 10, 10], 3, 0.95, False),  # class without ground truth
    ]
    detections = {
        "image_id": np.array([r[0] for r in rows]),
        "box": _boxes(*[r[1] for r in rows]).astype(np.float32),
        "pred_class": np.array([r[2] for r in rows]),
        "class_prob": np.array([r[3] for r in rows], dtype=np.float32),
    }
    return detections, ground_truth, np.array([r[4] for r in rows])


def test_match_detections_follows_voc_matching(hand_case):
    detections, ground_truth, expected = hand_case
    np.testing.assert_array_equal(match_detections(detections, ground_truth), expected)


def test_f1_optimal_thresholds_on_hand_made_case(hand_case, caplog):
    detections, ground_truth, _ = hand_case
    # Class 0 in order TP FP TP FP TP, 3 GT: F1 = .5 .4 .667 .571 .75 -> 0.3.
    # Class 1 in order FP (TP FP tied) FP, 1 GT: F1 at the cuts = 0, .5, .4 -> 0.5.
    thresholds = f1_optimal_thresholds(detections, ground_truth)
    assert thresholds == pytest.approx({0: 0.3, 1: 0.5})
    assert thresholds == brute_force_thresholds(detections, ground_truth)
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        threshold = derive_score_threshold(detections, ground_truth, ["a", "b", "c", "d"])
    assert threshold.value == pytest.approx(0.4) and threshold.source == "f1"
    assert threshold.per_class == pytest.approx({"a": 0.3, "b": 0.5})
    assert "No detection of the class(es) c on the ID set" in caplog.text


def _iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def brute_force_thresholds(detections, ground_truth, iou_threshold=0.5):
    """For every candidate threshold, keep the boxes above it and match them from scratch."""
    det_image, det_class = detections["image_id"].tolist(), detections["pred_class"].tolist()
    probs, det_boxes = detections["class_prob"].tolist(), detections["box"].tolist()
    gt_image, gt_class = ground_truth["image_id"].tolist(), ground_truth["class"].tolist()
    gt_boxes = ground_truth["box"].tolist()
    result = {}
    for cls in sorted(set(gt_class)):
        mine = [i for i in range(len(probs)) if det_class[i] == cls]
        num_gt = gt_class.count(cls)
        best_f1, best_threshold = -1.0, None
        for threshold in sorted({probs[i] for i in mine}, reverse=True):
            kept = sorted((i for i in mine if probs[i] >= threshold), key=lambda i: -probs[i])
            matched, true_positives = set(), 0
            for i in kept:
                candidates = [
                    g
                    for g in range(len(gt_class))
                    if gt_image[g] == det_image[i] and gt_class[g] == cls
                ]
                if not candidates:
                    continue
                overlaps = [_iou(det_boxes[i], gt_boxes[g]) for g in candidates]
                best = candidates[int(np.argmax(overlaps))]
                if max(overlaps) >= iou_threshold and best not in matched:
                    matched.add(best)
                    true_positives += 1
            f1 = 2 * true_positives / (len(kept) + num_gt)
            if f1 > best_f1:
                best_f1, best_threshold = f1, threshold
        if mine:
            result[cls] = best_threshold
    return result


def _random_case(seed):
    """Detections jittered around random ground-truth boxes on 4 images, 3 classes, many ties."""
    rng = np.random.default_rng(seed)
    num_gt, num_det, num_images = 12, 40, 4
    corners = rng.uniform(0, 40, (num_gt, 2))
    ground_truth = {
        "image_id": rng.integers(0, num_images, num_gt),
        "box": np.hstack([corners, corners + rng.uniform(5, 20, (num_gt, 2))]),
        "class": rng.integers(0, 3, num_gt),
    }
    source = rng.integers(0, num_gt, num_det)  # detections jittered around ground-truth boxes
    detections = {
        "image_id": np.where(
            rng.random(num_det) < 0.8,
            ground_truth["image_id"][source],
            rng.integers(0, num_images, num_det),
        ),
        "box": (ground_truth["box"][source] + rng.normal(0, 3, (num_det, 4))).astype(np.float32),
        "pred_class": np.where(
            rng.random(num_det) < 0.8, ground_truth["class"][source], rng.integers(0, 3, num_det)
        ),
        "class_prob": rng.integers(1, 10, num_det).astype(np.float32) / 10,  # many ties
    }
    return detections, ground_truth


@pytest.mark.parametrize("seed", range(5))
def test_f1_optimal_thresholds_match_brute_force_on_random_cases(seed):
    detections, ground_truth = _random_case(seed)
    assert f1_optimal_thresholds(detections, ground_truth) == brute_force_thresholds(
        detections, ground_truth
    )


@pytest.mark.parametrize("derive", [derive_score_threshold, paper_score_threshold])
def test_no_detection_of_any_class_asks_for_a_fixed_threshold(hand_case, derive):
    detections, ground_truth, _ = hand_case
    none = {key: value[:0] for key, value in detections.items()}
    with pytest.raises(EmptyBoxSetError, match="VOS.EVAL.SCORE_THRESHOLD"):
        derive(none, ground_truth)


def _xywh(boxes):
    return [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes.tolist()]


def pycocotools_paper_thresholds(detections, ground_truth):
    """The paper's per-class thresholds, from a COCOeval run written out here: COCO ids are the
    image id + 1 and the class + 1; area "all" is index 0 and 100 detections index 2."""
    images = set(ground_truth["image_id"].tolist()) | set(detections["image_id"].tolist())
    annotations = zip(
        ground_truth["image_id"].tolist(),
        ground_truth["class"].tolist(),
        _xywh(ground_truth["box"]),
    )
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": image + 1} for image in sorted(images)],
        "annotations": [
            {"id": n + 1, "image_id": i + 1, "category_id": c + 1, "bbox": b, "iscrowd": 0}
            for n, (i, c, b) in enumerate(annotations)
        ],
        "categories": [{"id": c + 1} for c in sorted(set(ground_truth["class"].tolist()))],
    }
    for annotation in coco_gt.dataset["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    results = [
        {"image_id": i + 1, "category_id": c + 1, "bbox": b, "score": p}
        for i, c, b, p in zip(
            detections["image_id"].tolist(),
            detections["pred_class"].tolist(),
            _xywh(detections["box"]),
            detections["class_prob"].tolist(),
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    assert evaluation.params.iouThrs.tolist() == pytest.approx(np.linspace(0.5, 0.95, 10))
    thresholds = {}
    for k, category in enumerate(evaluation.params.catIds):
        precision = evaluation.eval["precision"][:, :, k, 0, 2].mean(axis=0)  # (101,)
        scores = evaluation.eval["scores"][:, :, k, 0, 2].mean(axis=0)
        recall = np.linspace(0, 1, 101)
        with np.errstate(invalid="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        if scores[np.argmax(f1)] != 0:
            thresholds[category - 1] = float(scores[np.argmax(f1)])
    return thresholds


def test_paper_threshold_matches_pycocotools_on_hand_made_case(hand_case, caplog):
    detections, ground_truth, _ = hand_case
    expected = pycocotools_paper_thresholds(detections, ground_truth)
    assert set(expected) == {0, 1}  # class 2 has no detection, class 3 no ground truth
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        threshold = paper_score_threshold(detections, ground_truth, ["a", "b", "c", "d"])
    assert threshold.source == "paper_f1"
    # Class 0: the best F1 is at recall 1, reached with probability 0.3 at 9 of the 10 IoU
    # thresholds (the last true positive has IoU 100/110) and never at IoU .95: 0.9 * 0.3.
    assert expected[0] == pytest.approx(0.27)
    assert threshold.per_class == pytest.approx({"a": expected[0], "b": expected[1]}, abs=1e-12)
    assert threshold.value == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    assert "No detection of the class(es) c on the ID set" in caplog.text
    # The strict threshold of the same case is another one (0.4, exact F1 at IoU 0.5).
    assert threshold.value != pytest.approx(derive_score_threshold(detections, ground_truth).value)


@pytest.mark.parametrize("seed", range(5))
def test_paper_threshold_matches_pycocotools_on_random_cases(seed):
    detections, ground_truth = _random_case(seed)
    expected = pycocotools_paper_thresholds(detections, ground_truth)
    threshold = paper_score_threshold(detections, ground_truth)
    assert threshold.per_class == pytest.approx({str(c): v for c, v in expected.items()})
    assert threshold.value == pytest.approx(np.mean(list(expected.values())))
