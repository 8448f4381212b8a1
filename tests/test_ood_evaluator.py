"""OOD evaluation: F1-optimal threshold, the score collector, VOSTrainer.test end to end."""

import contextlib
import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import vos_det
from tiny_detection import IMAGE_SIZE, tiny_cfg
from vos_det.data import register_ood_dataset
from vos_det.engine import VOSTrainer
from vos_det.evaluation import EvaluationFolder, OODScoreCollector, format_table, ood_metrics
from vos_det.evaluation.box_matching import (
    EmptyBoxSetError,
    ScoreThreshold,
    derive_score_threshold,
    f1_optimal_thresholds,
    match_detections,
)
from vos_det.evaluation.detectron2_adapters import ground_truth_arrays, split_id_and_ood
from vos_det.evaluation.ood_metrics import roc_curve
from vos_det.evaluation.protocol import evaluate_ood_protocol
from vos_det.scores import ScoreInputs, compute_scores

TINY_OOD = "vos_tiny_ood"
SCORES = ("vos", "energy", "msp", "max_logit")
LOGIT_SCORES = ("energy", "msp", "max_logit")


def register_tiny_ood_dataset(root: Path, num_images: int = 4) -> str:
    """Images of 1-2 filled circles (a shape and colours the ID set lacks), as an OOD set."""
    if TINY_OOD in DatasetCatalog.list():
        return TINY_OOD
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(num_images):
        image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for _ in range(rng.integers(1, 3)):
            radius = int(rng.integers(7, 14))
            centre = tuple(int(c) for c in rng.integers(radius, IMAGE_SIZE - radius, size=2))
            colour = [(255, 255, 60), (255, 60, 255)][int(rng.integers(0, 2))]
            cv2.circle(image, centre, radius, colour, thickness=-1)
        cv2.imwrite(str(root / f"{index:04d}.png"), image)
    register_ood_dataset(TINY_OOD, str(root), id_classes=["red", "green", "blue"])
    return TINY_OOD


def ood_eval_cfg(tiny_datasets, ood_name: str, output_dir: str):
    """tiny_cfg evaluating on the tiny ID test set and the OOD set, keeping low-probability boxes."""
    cfg = tiny_cfg(*tiny_datasets, output_dir)
    cfg.DATASETS.TEST = (tiny_datasets[1], ood_name)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.01
    cfg.VOS.EVAL.SCORE_THRESHOLD = 0.05
    return cfg


# ---------------------------------------------------------------- F1-optimal threshold


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


@pytest.mark.parametrize("seed", range(5))
def test_f1_optimal_thresholds_match_brute_force_on_random_cases(seed):
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
    assert f1_optimal_thresholds(detections, ground_truth) == brute_force_thresholds(
        detections, ground_truth
    )


def test_no_detection_of_any_class_asks_for_a_fixed_threshold(hand_case):
    detections, ground_truth, _ = hand_case
    none = {key: value[:0] for key, value in detections.items()}
    with pytest.raises(EmptyBoxSetError, match="VOS.EVAL.SCORE_THRESHOLD"):
        derive_score_threshold(none, ground_truth)


# ---------------------------------------------------------------- protocol pieces


def _random_box_scores(rng, num_boxes, shift=0.0):
    arrays = {
        "image_id": rng.integers(0, 5, num_boxes),
        "box": rng.uniform(0, 50, (num_boxes, 4)).astype(np.float32),
        "pred_class": rng.integers(0, 3, num_boxes),
        "class_prob": rng.uniform(0, 1, num_boxes).astype(np.float32),
    }
    arrays.update({s: (rng.normal(shift, 1, num_boxes)).astype(np.float32) for s in SCORES})
    return arrays


def test_protocol_keeps_boxes_by_threshold_and_skips_empty_ood_sets(caplog):
    rng = np.random.default_rng(0)
    id_scores = _random_box_scores(rng, 50, shift=1.0)
    ood = {"ood_a": _random_box_scores(rng, 40), "ood_b": _random_box_scores(rng, 3)}
    ood["ood_b"]["class_prob"][:] = 0.1
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        result = evaluate_ood_protocol(
            "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.95
        )
    kept_id, kept_a = id_scores["class_prob"] >= 0.3, ood["ood_a"]["class_prob"] >= 0.3
    assert result.id_kept == kept_id.sum() and result.ood["ood_a"].kept == kept_a.sum()
    for score in ("vos", "energy"):
        assert result.ood["ood_a"].metrics[score] == ood_metrics(
            id_scores[score][kept_id], ood["ood_a"][score][kept_a], 0.95
        )
    assert result.ood["ood_b"].kept == 0 and result.ood["ood_b"].metrics == {}
    assert "No box of the OOD set ood_b reaches" in caplog.text
    rows = [line.split("|")[1:-1] for line in format_table({"": result}).splitlines()]
    ood_b_rows = [[cell.strip() for cell in row] for row in rows if row and "ood_b" in row[0]]
    assert ood_b_rows == [["ood_b", score, "-", "-", "-"] for score in ("vos", "energy")]
    with pytest.raises(EmptyBoxSetError, match="No box of the ID set id reaches"):
        evaluate_ood_protocol("id", id_scores, ood, ScoreThreshold(1.0, "fixed"), ["vos"])


def test_a_nan_score_is_named_and_the_other_scores_are_kept(caplog):
    rng = np.random.default_rng(3)
    id_scores = _random_box_scores(rng, 30, shift=1.0)
    ood = {"ood_a": _random_box_scores(rng, 20)}
    id_scores["class_prob"][:] = ood["ood_a"]["class_prob"][:] = 0.9
    ood["ood_a"]["vos"][4] = np.nan
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        result = evaluate_ood_protocol(
            "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.95
        )
    assert set(result.ood["ood_a"].metrics) == {"energy"}
    assert result.ood["ood_a"].metrics["energy"] == ood_metrics(
        id_scores["energy"], ood["ood_a"]["energy"], 0.95
    )
    assert "The vos score is NaN or infinite on 1 of the 20 kept boxes of ood_a" in caplog.text
    id_scores["energy"][0] = np.inf
    result = evaluate_ood_protocol(
        "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.95
    )
    assert result.ood["ood_a"].metrics == {} and set(result.id_score_thresholds) == {"vos"}


def test_id_score_thresholds_flag_the_complement_of_the_tpr():
    rng = np.random.default_rng(4)
    id_scores = _random_box_scores(rng, 40, shift=1.0)
    id_scores["class_prob"][:] = 0.9
    ood = {"ood_a": _random_box_scores(rng, 10)}
    ood["ood_a"]["class_prob"][:] = 0.9
    result = evaluate_ood_protocol(
        "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.9
    )
    for score in ("vos", "energy"):
        threshold = result.id_score_thresholds[score]
        assert np.count_nonzero(id_scores[score] >= threshold) == 36  # 90% of 40
        assert np.count_nonzero(id_scores[score] > threshold) == 35
        assert result.ood["ood_a"].metrics[score]["FPR90"] == pytest.approx(
            100 * np.mean(ood["ood_a"][score] >= threshold)
        )
    assert result.fpr_key == "FPR90"
    assert type(result).from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_roc_curve_area_equals_auroc():
    rng = np.random.default_rng(1)
    id_scores, ood_scores = rng.normal(1, 1, 200).round(1), rng.normal(0, 1, 150).round(1)
    fpr, tpr = roc_curve(id_scores, ood_scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert 100 * area == pytest.approx(ood_metrics(id_scores, ood_scores)["AUROC"], abs=1e-9)


def test_split_id_and_ood_requires_exactly_one_id_set_with_ood_sets():
    MetadataCatalog.get("split_ood").set(evaluator_type="ood")
    MetadataCatalog.get("split_id_a").set(evaluator_type="coco")
    MetadataCatalog.get("split_id_b")  # no evaluator_type: Detectron2's own sets count as ID
    assert split_id_and_ood(["split_id_a", "split_ood"]) == (["split_id_a"], ["split_ood"])
    assert split_id_and_ood(["split_id_a", "split_id_b"]) == (["split_id_a", "split_id_b"], [])
    with pytest.raises(ValueError, match="exactly one ID set.*holds 2 ID set"):
        split_id_and_ood(["split_id_a", "split_id_b", "split_ood"])
    with pytest.raises(ValueError, match="holds 0 ID set"):
        split_id_and_ood(["split_ood"])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("SCORE_THRESHOLD", 1.5, r"VOS.EVAL.SCORE_THRESHOLD=1.5 must be negative"),
        ("TPR", 0.0, r"VOS.EVAL.TPR=0.0 must be in \(0, 1\]"),
        ("SCORES", ("vos", "entropy"), "VOS.EVAL.SCORES=.*must list distinct names among"),
        ("SCORES", ("vos", "vos"), "VOS.EVAL.SCORES=.*must list distinct names"),
    ],
)
def test_invalid_eval_config_values_name_the_key(key, value, message):
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    vos_det.validate_vos_config(cfg)  # the defaults are valid
    cfg.VOS.EVAL[key] = value
    with pytest.raises(ValueError, match=message):
        vos_det.validate_vos_config(cfg)


# ---------------------------------------------------------------- the collector


def _fake_output(num_boxes: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    instances = Instances((IMAGE_SIZE, IMAGE_SIZE))
    instances.pred_boxes = Boxes(torch.rand(num_boxes, 4, generator=generator) * 30)
    instances.scores = torch.rand(num_boxes, generator=generator)
    instances.pred_classes = torch.randint(0, 3, (num_boxes,), generator=generator)
    instances.fg_logits = torch.randn(num_boxes, 3, generator=generator)
    instances.vos_scores = torch.rand(num_boxes, generator=generator)
    for name, values in compute_scores(LOGIT_SCORES, ScoreInputs(instances.fg_logits)).items():
        instances.set(f"{name}_scores", values)
    return {"instances": instances}


def test_collector_gathers_every_worker_on_the_main_process(monkeypatch):
    worker0, worker1 = OODScoreCollector("d", SCORES), OODScoreCollector("d", SCORES)
    for collector in (worker0, worker1):
        collector.reset()
    outputs = [_fake_output(3, 0), _fake_output(0, 1), _fake_output(2, 2)]
    worker0.process([{"image_id": "a.png"}, {"image_id": "b.png"}], outputs[:2])
    worker1.process([{"image_id": "long/c.png"}], outputs[2:])
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [data, worker1._images])
    arrays = worker0.evaluate()[OODScoreCollector.RESULT_KEY]
    assert arrays["image_id"].tolist() == ["a.png"] * 3 + ["long/c.png"] * 2
    expected = [outputs[0]["instances"], outputs[2]["instances"]]
    logits = torch.cat([i.fg_logits for i in expected])
    np.testing.assert_array_equal(arrays["box"], torch.cat([i.pred_boxes.tensor for i in expected]))
    np.testing.assert_array_equal(arrays["class_prob"], torch.cat([i.scores for i in expected]))
    np.testing.assert_array_equal(
        arrays["pred_class"], torch.cat([i.pred_classes for i in expected])
    )
    np.testing.assert_array_equal(arrays["vos"], torch.cat([i.vos_scores for i in expected]))
    expected_scores = compute_scores(LOGIT_SCORES, ScoreInputs(logits))
    for name in LOGIT_SCORES:
        np.testing.assert_allclose(arrays[name], expected_scores[name], rtol=1e-6)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert worker0.evaluate() == {}


def test_collector_rejects_models_without_the_score_fields():
    output = _fake_output(2, 0)
    output["instances"].remove("msp_scores")
    with pytest.raises(ValueError, match="no msp_scores.*ROI_HEADS.NAME 'VOSROIHeads'"):
        OODScoreCollector("d", SCORES).process([{"image_id": 0}], [output])


# ---------------------------------------------------------------- VOSTrainer.test end to end


_TRAINED = {}


def trained_ood_run(tiny_datasets, tmp_path_factory):
    """A VOS model trained 6 steps; the evaluation hook after training runs VOSTrainer.test.

    Trained once per session and shared with test_evaluate_ood_tool.py (tests only read its
    OUTPUT_DIR).
    """
    if "run" not in _TRAINED:
        ood_name = register_tiny_ood_dataset(tmp_path_factory.mktemp("tiny_ood"))
        cfg = ood_eval_cfg(tiny_datasets, ood_name, str(tmp_path_factory.mktemp("ood_run")))
        trainer = VOSTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        _TRAINED["run"] = (cfg, trainer)
    return _TRAINED["run"]


@pytest.fixture(scope="module")
def evaluated_run(tiny_datasets, tmp_path_factory):
    return trained_ood_run(tiny_datasets, tmp_path_factory)


def test_test_writes_results_plots_and_scores(evaluated_run, tiny_datasets):
    cfg, _ = evaluated_run
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    for name in cfg.DATASETS.TEST:
        assert (folder / f"scores_{name}.npz").is_file()
    for png in [f"hist_{score}.png" for score in SCORES] + [f"roc_{TINY_OOD}.png"]:
        assert (folder / "ood_plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    saved = json.loads((folder / "ood_results.json").read_text())
    id_arrays = EvaluationFolder(str(folder)).load_box_scores(tiny_datasets[1])
    ood_arrays = EvaluationFolder(str(folder)).load_box_scores(TINY_OOD)
    assert saved["id_dataset"] == tiny_datasets[1] and saved["threshold"]["value"] == 0.05
    id_kept = id_arrays["class_prob"] >= 0.05
    ood_kept = ood_arrays["class_prob"] >= 0.05
    assert 0 < id_kept.sum() == saved["id_kept"] and saved["id_boxes"] == len(id_kept)
    assert 0 < ood_kept.sum() == saved["ood"][TINY_OOD]["kept"]
    assert ood_arrays["image_id"].dtype.kind == "U"  # OOD folder images are named by path
    for score in SCORES:
        expected = ood_metrics(id_arrays[score][id_kept], ood_arrays[score][ood_kept], 0.95)
        assert saved["ood"][TINY_OOD]["metrics"][score] == expected


def test_evaluation_hook_received_flat_float_results(evaluated_run):
    _, trainer = evaluated_run
    latest = trainer.storage.latest()
    for score in SCORES:
        assert f"{TINY_OOD}/{score}/FPR95" in latest
    assert f"{trainer.cfg.DATASETS.TEST[0]}/bbox/AP" in latest
    assert latest[f"{trainer.cfg.DATASETS.TEST[0]}/ood_protocol/threshold"][0] == 0.05


def test_id_ap_agrees_with_pycocotools(evaluated_run, tiny_datasets):
    cfg, _ = evaluated_run
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    saved = json.loads((folder / "ood_results.json").read_text())
    arrays = EvaluationFolder(str(folder)).load_box_scores(tiny_datasets[1])
    images, annotations = [], []
    for record in DatasetCatalog.get(tiny_datasets[1]):
        images.append({"id": record["image_id"], "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        for annotation in record["annotations"]:
            x0, y0, x1, y1 = annotation["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record["image_id"],
                    "category_id": annotation["category_id"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": str(i)} for i in range(3)],
    }
    boxes = arrays["box"]  # float32, converted the way COCOEvaluator converts its tensors
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    detections = [
        {"image_id": int(i), "category_id": int(c), "bbox": b, "score": s}
        for i, c, b, s in zip(
            arrays["image_id"], arrays["pred_class"], xywh.tolist(), arrays["class_prob"].tolist()
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    for index, key in enumerate(("AP", "AP50", "AP75")):
        assert saved["id_metrics"][key] == pytest.approx(100 * evaluation.stats[index], abs=1e-9)


def test_derived_threshold_is_the_f1_optimal_one(evaluated_run, tiny_datasets):
    cfg, trainer = evaluated_run
    cfg = cfg.clone()
    cfg.defrost()
    cfg.VOS.EVAL.SCORE_THRESHOLD = -1.0
    cfg.VOS.EVAL.SAVE_PLOTS = False
    cfg.OUTPUT_DIR = cfg.OUTPUT_DIR + "_derived"
    results = VOSTrainer.test(cfg, trainer.model)
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    arrays = EvaluationFolder(str(folder)).load_box_scores(tiny_datasets[1])
    expected = derive_score_threshold(
        arrays, ground_truth_arrays(DatasetCatalog.get(tiny_datasets[1])), ["red", "green", "blue"]
    )
    saved = json.loads((folder / "ood_results.json").read_text())
    assert saved["threshold"] == {
        "value": expected.value,
        "source": "f1",
        "per_class": expected.per_class,
    }
    assert results[tiny_datasets[1]]["ood_protocol"]["threshold"] == expected.value
    assert not (folder / "ood_plots").exists()


def test_without_ood_sets_it_is_plain_coco_evaluation(evaluated_run, tiny_datasets):
    cfg, trainer = evaluated_run
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = (tiny_datasets[1],)
    cfg.OUTPUT_DIR = cfg.OUTPUT_DIR + "_id_only"
    results = VOSTrainer.test(cfg, trainer.model)
    assert set(results) == {"bbox"} and "AP50" in results["bbox"]
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    assert (folder / f"scores_{tiny_datasets[1]}.npz").is_file()
    assert not (folder / "ood_results.json").exists()
