"""vos_det.core.open_set_metrics against pycocotools (known and unknown AP) and against literal,
loop-by-loop references written here from OWOD's and COCO's rules (WI, A-OSE, unknown AP50 and
recall), on hand-made cases worked out in comments and on random cases with ties."""

import ast
import contextlib
import io
import math
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vos_det.core.open_set_metrics import open_set_metrics

MODULE = Path(__file__).resolve().parents[1] / "vos_det" / "core" / "open_set_metrics.py"


# --------------------------------------------------------------------------- case building


def detections(rows: List[tuple]) -> Dict[str, np.ndarray]:
    """rows: (image_id, box, pred_class, class_prob, flagged, unknown_confidence)."""
    return {
        "image_id": np.array([r[0] for r in rows], dtype=np.int64),
        "box": np.array([r[1] for r in rows], dtype=float).reshape(-1, 4),
        "pred_class": np.array([r[2] for r in rows], dtype=np.int64),
        "class_prob": np.array([r[3] for r in rows], dtype=float),
        "flagged": np.array([r[4] for r in rows], dtype=bool),
        "unknown_confidence": np.array([r[5] for r in rows], dtype=float),
    }


def objects(rows: List[tuple]) -> Dict[str, np.ndarray]:
    """rows: (image_id, box, class)."""
    return {
        "image_id": np.array([r[0] for r in rows], dtype=np.int64),
        "box": np.array([r[1] for r in rows], dtype=float).reshape(-1, 4),
        "class": np.array([r[2] for r in rows], dtype=np.int64),
    }


def random_case(seed: int, num_known: int = 4, num_images: int = 7, dets_per_image: int = 12):
    """Integer boxes (exact IoU, sometimes exactly at a threshold), scores with many ties.

    Class 0 has objects but is never predicted, class 1 is predicted but has no object; the
    last image has no object; detections are jittered copies of known and unknown objects
    plus clutter.
    """
    rng = np.random.default_rng(seed)
    image_ids = [int(i) for i in rng.choice(np.arange(1, 60), num_images, replace=False)]
    gt_rows, det_rows = [], []
    for n, image in enumerate(image_ids):
        count = 0 if n == num_images - 1 else int(rng.integers(1, 6))
        for _ in range(count):
            x, y = rng.integers(0, 40, size=2)
            w, h = rng.integers(4, 24, size=2)
            cls = int(rng.choice([0, 2, 3, num_known]))
            gt_rows.append((image, (x, y, x + w, y + h), cls))
        mine = [r for r in gt_rows if r[0] == image]
        for _ in range(dets_per_image):
            cls = int(rng.choice([1, 2, 3]))
            if mine and rng.random() < 0.7:
                _, box, true_cls = mine[rng.integers(len(mine))]
                box = np.array(box) + rng.integers(-2, 3, size=4)
                box[2:] = np.maximum(box[2:], box[:2])
                cls = true_cls if true_cls in (2, 3) and rng.random() < 0.7 else cls
            else:
                x, y = rng.integers(0, 40, size=2)
                box = np.array([x, y, x + rng.integers(1, 20), y + rng.integers(1, 20)])
            det_rows.append((image, tuple(box), cls, rng.integers(1, 6) / 5, rng.random() < 0.3,
                             rng.integers(1, 4) / 3))
    return detections(det_rows), objects(gt_rows), num_known, image_ids


# --------------------------------------------------------------------------- references


def iou_ref(a, b) -> float:
    """IoU of two XYXY boxes, continuous coordinates."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def ranked_ref(indices, scores, image_of, image_ids):
    """Indices by descending score, then image (sorted ids), then input order."""
    order = sorted(set(image_ids))
    return sorted(indices, key=lambda i: (-scores[i], order.index(image_of[i]), i))


def wi_and_aose_ref(det, gt, num_known, known_recall, thr, image_ids):
    """OWOD's voc_eval + compute_WI_at_a_recall_level, one detection at a time."""
    n_det = len(det["box"])
    tp_plus_fp_at, fp_open_at = [], []
    a_ose = 0
    for c in range(num_known):
        mine = [i for i in range(n_det) if not det["flagged"][i] and det["pred_class"][i] == c]
        mine = ranked_ref(mine, det["class_prob"], det["image_id"], image_ids)
        npos = sum(1 for k in range(len(gt["box"])) if gt["class"][k] == c)
        used = set()
        tp, fp, is_unk = [], [], []
        for i in mine:
            same = [k for k in range(len(gt["box"]))
                    if gt["class"][k] == c and gt["image_id"][k] == det["image_id"][i]]
            best, best_k = -1.0, None
            for k in same:
                o = iou_ref(det["box"][i], gt["box"][k])
                if o > best:  # strict: the first of equal IoU stays
                    best, best_k = o, k
            if best > thr and best_k not in used:
                used.add(best_k)
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
            unknowns = [k for k in range(len(gt["box"])) if gt["class"][k] == num_known
                        and gt["image_id"][k] == det["image_id"][i]]
            is_unk.append(int(any(iou_ref(det["box"][i], gt["box"][k]) > thr for k in unknowns)))
        a_ose += sum(is_unk)
        if not mine:
            continue
        cum_tp = [sum(tp[: j + 1]) for j in range(len(mine))]
        cum_fp = [sum(fp[: j + 1]) for j in range(len(mine))]
        if npos == 0:
            index = 0  # OWOD: recall is NaN everywhere and min() keeps the first
        else:
            rec = [t / float(npos) for t in cum_tp]
            index = min(range(len(rec)), key=lambda j: abs(rec[j] - known_recall))
        tp_plus_fp_at.append(cum_tp[index] + cum_fp[index])
        fp_open_at.append(sum(is_unk[: index + 1]))
    wi = (sum(fp_open_at) / len(fp_open_at)) / (sum(tp_plus_fp_at) / len(tp_plus_fp_at)) \
        if tp_plus_fp_at else 0.0
    return wi, float(a_ose)


def unknown_ref(det, gt, num_known, thr, image_ids, max_dets=100):
    """COCO-rule AP at 0.5 and recall at thr (percent) of flagged detections vs unknowns."""
    unknowns = [k for k in range(len(gt["box"])) if gt["class"][k] == num_known]
    if not unknowns:
        return math.nan, math.nan
    flagged = [i for i in range(len(det["box"])) if det["flagged"][i]]
    ranked = ranked_ref(flagged, det["unknown_confidence"], det["image_id"], image_ids)
    per_image: Dict[int, int] = {}
    kept = []
    for i in ranked:
        per_image[det["image_id"][i]] = per_image.get(det["image_id"][i], 0) + 1
        if per_image[det["image_id"][i]] <= max_dets:
            kept.append(i)

    def hits_at(t):
        taken, hits = set(), []
        for i in kept:
            best, best_k = t, None
            for k in unknowns:
                if k in taken or gt["image_id"][k] != det["image_id"][i]:
                    continue
                o = iou_ref(det["box"][i], gt["box"][k])
                if o >= best:  # ">=": the last of equal IoU wins, as COCOeval
                    best, best_k = o, k
            if best_k is not None:
                taken.add(best_k)
            hits.append(best_k is not None)
        return hits

    hits = hits_at(0.5)
    precision = [sum(hits[: j + 1]) / (j + 1) for j in range(len(hits))]
    recall = [sum(hits[: j + 1]) / len(unknowns) for j in range(len(hits))]
    points = [r / 100 for r in range(101)]
    ap = sum(max([p for p, r in zip(precision, recall) if r >= point], default=0.0)
             for point in points) / 101
    return 100 * ap, 100 * sum(hits_at(thr)) / len(unknowns)


def coco_stats(det, gt, categories, image_ids, used, score_key):
    """pycocotools' (AP, AP50, recall@0.5) in percent over ``categories``; None if no det."""
    coco = COCO()
    anns = [
        {"id": k + 1, "image_id": int(gt["image_id"][k]), "category_id": int(gt["class"][k]),
         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
         "iscrowd": 0}
        for k, b in enumerate(gt["box"].tolist()) if gt["class"][k] in categories
    ]
    coco.dataset = {"images": [{"id": int(i)} for i in image_ids], "annotations": anns,
                    "categories": [{"id": int(c)} for c in categories]}
    results = [
        {"image_id": int(det["image_id"][i]), "score": float(det[score_key][i]),
         "category_id": int(det["pred_class"][i]) if len(categories) > 1 else int(categories[0]),
         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
        for i, b in enumerate(det["box"].tolist()) if used[i]
    ]
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    recall = evaluator.eval["recall"][0, :, 0, 2]
    ap, ap50 = (100 * s if s > -1 else math.nan for s in evaluator.stats[:2])  # -1: no object
    return ap, ap50, 100 * recall[recall > -1]


# --------------------------------------------------------------------------- hand-made cases

# K = 2 known classes, unknown = 2. Images 1, 2, 3 (3 has no object).
HAND_GT = objects([
    (1, (0, 0, 10, 10), 0),      # A
    (1, (20, 0, 30, 10), 2),     # U1 unknown
    (2, (0, 0, 10, 10), 0),      # B
    (2, (40, 40, 50, 50), 1),    # C
    (2, (20, 20, 30, 30), 2),    # U2 unknown
])
HAND_DET = detections([
    (1, (0, 0, 10, 10), 0, 0.9, False, 0.0),    # d0 on A: TP
    (1, (20, 0, 30, 10), 0, 0.8, False, 0.0),   # d1 on U1: FP, open-set
    (2, (20, 20, 30, 30), 0, 0.8, False, 0.0),  # d2 on U2: FP, open-set, ties d1
    (2, (0, 0, 10, 10), 0, 0.7, False, 0.0),    # d3 on B: TP
    (3, (0, 0, 5, 5), 0, 0.6, False, 0.0),      # d4 clutter: FP
    (1, (21, 0, 31, 10), 1, 0.5, False, 0.0),   # d5 on U1 (IoU 90/110): FP, open-set
    (2, (40, 40, 50, 50), 1, 0.4, False, 0.0),  # d6 on C: TP
    (2, (20, 20, 30, 30), 1, 0.3, True, 0.9),   # d7 flagged on U2
])


def test_hand_case_exact_values():
    # Class 0, ranked d0, d1, d2 (tie 0.8: image 1 first), d3, d4: TP 1 0 0 1 0, recall
    # .5 .5 .5 1 1; closest to 0.8 is recall 1 (0.2 < 0.3) at index 3: TP+FP 4, open-set FP
    # (d1, d2) 2. Class 1, ranked d5, d6: recall 0, 1 -> index 1: TP+FP 2, open-set FP 1.
    # WI = mean(2, 1) / mean(4, 2) = 0.5. A-OSE = d1, d2, d5 = 3 of 2 unknowns -> 150 per 100.
    # Unknown: d7 finds U2 -> recall 50 %; AP50: precision 1 for the 51 points r <= 0.5.
    out = open_set_metrics(HAND_DET, HAND_GT, 2, [1, 2, 3])
    assert out["WI"] == 0.5
    assert out["A-OSE"] == 3.0 and out["A-OSE_per_100_unknown"] == 150.0
    assert out["unknown_recall"] == 50.0
    assert out["unknown_AP50"] == pytest.approx(100 * 51 / 101, abs=1e-9)
    assert out["unknown_objects"] == 2.0 and out["known_objects"] == 3.0
    assert (out["WI"], out["A-OSE"]) == wi_and_aose_ref(HAND_DET, HAND_GT, 2, 0.8, 0.5, [1, 2, 3])
    ap, recall = unknown_ref(HAND_DET, HAND_GT, 2, 0.5, [1, 2, 3])
    assert out["unknown_AP50"] == pytest.approx(ap, abs=1e-9) and out["unknown_recall"] == recall
    # Class 0 AP50: TP at ranks 1 and 4 -> precision 1 up to recall .5, then 2/4 up to 1:
    # (51 * 1 + 50 * 0.5) / 101; class 1: TP at rank 2 -> 101 points at precision 1/2.
    expected = (51 + 25) / 101 / 2 + 0.5 / 2
    assert out["known_AP50"] == pytest.approx(100 * expected, abs=1e-9)


@pytest.mark.parametrize("object_image, unknown_image, wi", [(1, 2, 0.0), (5, 2, 0.5)])
def test_wi_ties_follow_image_order(object_image, unknown_image, wi):
    # One class-0 object G and one unknown U, both (0,0,10,10); two detections at 0.7, e1 on U
    # (listed first) and e2 on G. Equal scores rank by image id. If G's image comes first:
    # TP 1 0, recall 1 1 -> index 0 (first of equal distance): open 0 / closed 1 = 0. If U's
    # image comes first: TP 0 1, recall 0 1 -> index 1: open 1 / closed 2 = 0.5.
    gt = objects([(object_image, (0, 0, 10, 10), 0), (unknown_image, (0, 0, 10, 10), 1)])
    det = detections([(unknown_image, (0, 0, 10, 10), 0, 0.7, False, 0.0),
                      (object_image, (0, 0, 10, 10), 0, 0.7, False, 0.0)])
    images = [object_image, unknown_image]
    out = open_set_metrics(det, gt, 1, images)
    assert out["WI"] == wi == wi_and_aose_ref(det, gt, 1, 0.8, 0.5, images)[0]
    assert out["A-OSE"] == 1.0


def test_wi_uses_owod_matching_and_ap_uses_coco_matching():
    # Objects P (0,0,10,10), Q (3,0,13,10) of class 0, unknown V (1,3,11,13). f1 = P (0.9),
    # f2 = (1,0,11,10) (0.8): IoU(f2,P) = 90/110, IoU(f2,Q) = 80/120, IoU(f2,V) = 70/130 > .5,
    # IoU(f1,V) = 63/137 < .5. OWOD gives f2 its best object P, already taken: FP; recall
    # .5 .5, closest to 1.0 at index 0: WI = 0 / 1. COCO gives f2 the free Q: AP50 = 100.
    gt = objects([(1, (0, 0, 10, 10), 0), (1, (3, 0, 13, 10), 0), (1, (1, 3, 11, 13), 1)])
    det = detections([(1, (0, 0, 10, 10), 0, 0.9, False, 0.0),
                      (1, (1, 0, 11, 10), 0, 0.8, False, 0.0)])
    out = open_set_metrics(det, gt, 1, [1], known_recall=1.0)
    assert out["WI"] == 0.0 and out["A-OSE"] == 1.0
    assert out["known_AP50"] == pytest.approx(100.0, abs=1e-9)
    assert (out["WI"], out["A-OSE"]) == wi_and_aose_ref(det, gt, 1, 1.0, 0.5, [1])


def test_iou_exactly_at_threshold():
    # Unknown U (0,0,10,10), class-0 object K (20,0,30,10). a = U (0.9): open-set error.
    # b = (20,0,30,5) (0.8): IoU 0.5 with K, a FP for OWOD (IoU > 0.5) but a TP for COCO
    # (IoU >= 0.5). c = (0,0,10,5) (0.7): IoU 0.5 with U, no open-set error. f, flagged, as c:
    # finds U. At known recall 1: recall 0 0 0 -> index 0: WI = 1 / 1 (b as a TP would give
    # recall 0 1 1 -> index 1: 1 / 2). A-OSE = 1 (a). known AP50: TP at rank 2 -> 50.
    gt = objects([(1, (0, 0, 10, 10), 1), (1, (20, 0, 30, 10), 0)])
    det = detections([(1, (0, 0, 10, 10), 0, 0.9, False, 0.0),
                      (1, (20, 0, 30, 5), 0, 0.8, False, 0.0),
                      (1, (0, 0, 10, 5), 0, 0.7, False, 0.0),
                      (1, (0, 0, 10, 5), 0, 0.9, True, 0.5)])
    out = open_set_metrics(det, gt, 1, [1], known_recall=1.0)
    assert out["WI"] == 1.0 and out["A-OSE"] == 1.0 and out["unknown_recall"] == 100.0
    assert out["known_AP50"] == pytest.approx(50.0, abs=1e-9)
    assert (out["WI"], out["A-OSE"]) == wi_and_aose_ref(det, gt, 1, 1.0, 0.5, [1])


def test_coco_matching_gives_the_last_of_equal_iou():
    # Objects P (0,0,10,10), Q (2,0,12,10). d1 (1,0,11,10) (0.9) has IoU 9/11 with both: COCO
    # gives it Q, the last. d2 (3,0,13,10) (0.8): IoU 9/11 with Q (taken), 7/13 with P. At
    # IoU 0.5: TP TP -> AP 1; 0.55..0.80 (6 thresholds): TP FP -> 51/101; 0.85..0.95: 0.
    # AP = (1 + 6 * 51 / 101) / 10 (had d1 taken P, d2 would take Q: AP 0.7).
    gt = objects([(1, (0, 0, 10, 10), 0), (1, (2, 0, 12, 10), 0)])
    det = detections([(1, (1, 0, 11, 10), 0, 0.9, False, 0.0),
                      (1, (3, 0, 13, 10), 0, 0.8, False, 0.0)])
    out = open_set_metrics(det, gt, 1, [1])
    assert out["known_AP"] == pytest.approx(100 * (1 + 6 * 51 / 101) / 10, abs=1e-9)
    ap, ap50, _ = coco_stats(det, gt, [0], [1], np.ones(2, bool), "class_prob")
    assert out["known_AP"] == pytest.approx(ap, abs=1e-6)
    assert out["known_AP50"] == pytest.approx(ap50, abs=1e-6) and ap50 == 100.0


# --------------------------------------------------------------------------- random cases


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_against_literal_references(seed):
    det, gt, k, images = random_case(seed)
    for recall, thr in [(0.8, 0.5), (0.5, 0.6)]:
        out = open_set_metrics(det, gt, k, images, known_recall=recall, iou_threshold=thr)
        wi, a_ose = wi_and_aose_ref(det, gt, k, recall, thr, images)
        assert out["WI"] == pytest.approx(wi, rel=1e-12) and out["A-OSE"] == a_ose
        ap, unknown_recall = unknown_ref(det, gt, k, thr, images)
        assert out["unknown_AP50"] == pytest.approx(ap, abs=1e-9, nan_ok=True)
        assert out["unknown_recall"] == pytest.approx(unknown_recall, abs=1e-12, nan_ok=True)
        n_unknown = int((gt["class"] == k).sum())
        per_100 = 100 * a_ose / n_unknown if n_unknown else math.nan
        assert out["A-OSE_per_100_unknown"] == pytest.approx(per_100, nan_ok=True)


@pytest.mark.parametrize("seed", range(6))
def test_known_ap_matches_pycocotools(seed):
    det, gt, k, images = random_case(seed)
    out = open_set_metrics(det, gt, k, images)
    for suffix, used in [("", ~det["flagged"]), ("_all", np.ones(len(det["box"]), bool))]:
        ap, ap50, _ = coco_stats(det, gt, list(range(k)), images, used, "class_prob")
        assert out["known_AP" + suffix] == pytest.approx(ap, abs=1e-6)
        assert out["known_AP50" + suffix] == pytest.approx(ap50, abs=1e-6)
    ap, ap50, recall = coco_stats(det, gt, [k], images, det["flagged"], "unknown_confidence")
    assert out["unknown_AP50"] == pytest.approx(ap50, abs=1e-6, nan_ok=True)
    if recall.size:
        assert out["unknown_recall"] == pytest.approx(recall[0], abs=1e-6)


def test_known_ap_keeps_100_detections_per_image_and_class_like_pycocotools():
    rng = np.random.default_rng(7)
    gt = objects([(1, (x, 0, x + 10, 10), 0) for x in range(0, 300, 20)])
    det = detections([(1, (x, 0, x + 10, 10), 0, float(rng.integers(1, 20)), False, 0.0)
                      for x in rng.integers(0, 300, size=150)])
    out = open_set_metrics(det, gt, 1, [1])
    ap, ap50, _ = coco_stats(det, gt, [0], [1], np.ones(150, bool), "class_prob")
    assert out["known_AP"] == pytest.approx(ap, abs=1e-6)
    assert out["known_AP50"] == pytest.approx(ap50, abs=1e-6)
    assert out["known_AP"] != open_set_metrics(det, gt, 1, [1], max_detections=150)["known_AP"]


def test_string_image_ids_give_the_same_numbers():
    det, gt, k, images = random_case(3)
    names = {i: f"img{i:03d}" for i in images}  # same sort order as the integers

    def named(fields):
        return {**fields, "image_id": np.array([names[i] for i in fields["image_id"]])}

    out = open_set_metrics(named(det), named(gt), k, [names[i] for i in images])
    expected = open_set_metrics(det, gt, k, images)
    assert out.keys() == expected.keys()
    assert all(out[key] == expected[key] or (math.isnan(out[key]) and math.isnan(expected[key]))
               for key in out)


# --------------------------------------------------------------------------- edge cases


def test_no_unknown_objects():
    gt = objects([(1, (0, 0, 10, 10), 0)])
    out = open_set_metrics(HAND_DET, gt, 2, [1, 2, 3])
    assert math.isnan(out["unknown_AP50"]) and math.isnan(out["unknown_recall"])
    assert out["A-OSE"] == 0.0 and math.isnan(out["A-OSE_per_100_unknown"])
    assert out["WI"] == 0.0 and out["unknown_objects"] == 0.0


def test_no_detections():
    out = open_set_metrics(detections([]), HAND_GT, 2, [1, 2, 3])
    assert out["known_AP"] == out["known_AP50"] == out["known_AP_all"] == 0.0
    assert out["unknown_AP50"] == out["unknown_recall"] == 0.0
    assert out["WI"] == 0.0 and out["A-OSE"] == 0.0


def test_no_flagged_detection_finds_no_unknown():
    det = {**HAND_DET, "flagged": np.zeros(8, bool)}
    out = open_set_metrics(det, HAND_GT, 2, [1, 2, 3])
    assert out["unknown_AP50"] == 0.0 and out["unknown_recall"] == 0.0
    assert out["A-OSE"] == 4.0  # d7 now counts as a known-labelled box on U2
    assert out["known_AP"] == out["known_AP_all"]


def test_no_objects_and_empty_image_list_entries():
    out = open_set_metrics(HAND_DET, objects([]), 2, [1, 2, 3, 4])
    assert math.isnan(out["known_AP"]) and math.isnan(out["unknown_AP50"])
    assert out["known_objects"] == 0.0 and out["A-OSE"] == 0.0
    # Without objects OWOD's recall is NaN and it reads the first detection: 0 / 1 per class.
    assert out["WI"] == 0.0


# --------------------------------------------------------------------------- bad inputs


def _without(fields, key):
    return {k: v for k, v in fields.items() if k != key}


@pytest.mark.parametrize("det, gt, num_known, images, match", [
    (_without(HAND_DET, "flagged"), HAND_GT, 2, [1, 2, 3], "flagged"),
    ({**HAND_DET, "class_prob": np.ones(7)}, HAND_GT, 2, [1, 2, 3], "class_prob"),
    ({**HAND_DET, "box": np.zeros((8, 3))}, HAND_GT, 2, [1, 2, 3], r"box.*\(N, 4\)"),
    ({**HAND_DET, "pred_class": np.full(8, 2)}, HAND_GT, 2, [1, 2, 3], "pred_class"),
    ({**HAND_DET, "pred_class": np.full(8, 0.0)}, HAND_GT, 2, [1, 2, 3], "pred_class"),
    ({**HAND_DET, "class_prob": np.full(8, np.nan)}, HAND_GT, 2, [1, 2, 3], "class_prob"),
    ({**HAND_DET, "flagged": np.full(8, 2)}, HAND_GT, 2, [1, 2, 3], "flagged"),
    ({**HAND_DET, "unknown_confidence": np.full(8, np.inf)}, HAND_GT, 2, [1, 2, 3],
     "unknown_confidence"),
    ({**HAND_DET, "box": HAND_DET["box"][:, [2, 1, 0, 3]]}, HAND_GT, 2, [1, 2, 3], "XYXY"),
    (HAND_DET, {**HAND_GT, "class": np.array([0, 3, 0, 1, 2])}, 2, [1, 2, 3], "class"),
    (HAND_DET, {**HAND_GT, "class": np.array([0, -1, 0, 1, 2])}, 2, [1, 2, 3], "class"),
    (HAND_DET, _without(HAND_GT, "image_id"), 2, [1, 2, 3], "image_id"),
    (HAND_DET, HAND_GT, 2, [1, 2], "image_id"),
    (HAND_DET, HAND_GT, 2, ["1", "2", "3"], "image_id"),
    (HAND_DET, HAND_GT, 0, [1, 2, 3], "num_known"),
])
def test_bad_inputs_name_the_field(det, gt, num_known, images, match):
    with pytest.raises(ValueError, match=match):
        open_set_metrics(det, gt, num_known, images)


@pytest.mark.parametrize("argument, value", [("known_recall", 0.0), ("iou_threshold", 1.0),
                                             ("max_detections", 0),
                                             ("max_detections", 1.5)])
def test_bad_arguments_name_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        open_set_metrics(HAND_DET, HAND_GT, 2, [1, 2, 3], **{argument: value})


def test_module_imports_only_numpy_scipy_and_the_standard_library():
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"numpy", "scipy", "functools", "typing", "math", "collections"}
