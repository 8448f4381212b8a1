"""The open-set step of the evaluation: mixed sets through OODEvaluation, the saved files,
tools/evaluate_ood.py, the table and the flags."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser

from tiny_detection import TINY_OOD, register_tiny_mixed_dataset
from tool_scripts import load_tool
from vos_det.core.open_set_metrics import open_set_metrics
from vos_det.evaluation import EvaluationFolder, format_table
from vos_det.evaluation.detectron2_adapters import open_set_ground_truth
from vos_det.evaluation.open_set import KNOWN_RECALL, NO_FLAG, evaluate_open_set
from vos_det.evaluation.protocol import keep_boxes


@pytest.fixture(scope="module")
def mixed_run(trained_vos_run, tiny_datasets, tmp_path_factory):
    """The session's tiny model evaluated by train_net.py --eval-only on its ID test set, the
    OOD set and a tiny mixed set; returns (its inference folder, the returned results, the
    mixed set's name)."""
    mixed = register_tiny_mixed_dataset(tmp_path_factory.mktemp("tiny_mixed"))
    cfg = trained_vos_run[0].clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(tmp_path_factory.mktemp("mixed_eval"))
    cfg.MODEL.WEIGHTS = os.path.join(trained_vos_run[0].OUTPUT_DIR, "model_final.pth")
    cfg.DATASETS.TEST = (tiny_datasets[1], TINY_OOD, mixed)
    config_file = Path(cfg.OUTPUT_DIR) / "eval.yaml"
    config_file.write_text(cfg.dump())
    args = default_argument_parser().parse_args(["--config-file", str(config_file), "--eval-only"])
    results = load_tool("train_net").main(args)
    return os.path.join(cfg.OUTPUT_DIR, "inference"), results, mixed


@pytest.mark.slow
def test_a_mixed_set_gets_every_open_set_metric_of_every_score(mixed_run, trained_vos_run):
    folder, results, mixed = mixed_run
    saved = json.loads(Path(folder, "ood_results.json").read_text())["open_set"][mixed]
    assert saved["unknown_objects"] == 5 and saved["known_objects"] == 6
    scores = trained_vos_run[0].VOS.EVAL.SCORES
    assert list(saved["metrics"]) == [NO_FLAG, *scores]
    for row, metrics in saved["metrics"].items():
        assert {"known_AP", "known_AP50", "WI", "A-OSE", "A-OSE_per_100_unknown"} <= set(metrics)
        if row != NO_FLAG:
            assert {"unknown_AP50", "unknown_recall"} <= set(metrics)
        assert results[mixed][f"open_set/{row}"] == metrics
    assert saved["metrics"][NO_FLAG]["unknown_recall"] == 0.0
    assert saved["kept"] == results[mixed]["ood_protocol"]["kept_boxes"]


@pytest.mark.slow
def test_saved_metrics_are_those_of_the_kept_boxes_flagged_at_the_id_thresholds(mixed_run):
    folder, _, mixed = mixed_run
    run = EvaluationFolder(folder).read_run()
    box_scores, ground_truth = run.open_sets[mixed]
    assert set(ground_truth["images"].tolist()) == {
        r["image_id"] for r in DatasetCatalog.get(mixed)
    }
    kept = keep_boxes(box_scores, run.result.threshold.value, run.result.protocol)
    score = "energy"
    flagged = kept[score] < run.result.id_score_thresholds[score]
    detections = {
        "image_id": kept["image_id"],
        "box": kept["box"].astype(np.float64),
        "pred_class": kept["pred_class"],
        "class_prob": kept["class_prob"].astype(np.float64),
        "flagged": flagged,
        "unknown_confidence": -kept[score].astype(np.float64),
    }
    objects = {key: ground_truth[key] for key in ("image_id", "box", "class")}
    expected = open_set_metrics(detections, objects, 3, ground_truth["images"], KNOWN_RECALL)
    for key, value in run.result.open_set[mixed].metrics[score].items():
        assert value == pytest.approx(expected[key])


@pytest.mark.slow
def test_evaluate_ood_reproduces_the_open_set_table_from_the_saved_files(mixed_run, capsys):
    folder, _, mixed = mixed_run
    results = load_tool("evaluate_ood").main([f"--run=mixed={folder}"])
    saved = json.loads(Path(folder, "ood_results.json").read_text())
    assert results["mixed"].to_dict() == saved
    printed = capsys.readouterr().out
    assert f"| {mixed}" in printed and "| no flag" in printed and "A-OSE" in printed


def test_flags_follow_each_scores_id_threshold_and_nan_is_flagged():
    """Two images: a known square (class 0) and an unknown object; four kept detections."""
    box_scores = {
        "image_id": np.array([1, 1, 2, 2]),
        "box": np.array(
            [[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10], [5, 5, 9, 9]], np.float32
        ),
        "pred_class": np.array([0, 0, 1, 0]),
        "class_prob": np.array([0.9, 0.8, 0.7, 0.3], np.float32),
        "max_class_prob": np.array([0.9, 0.8, 0.7, 0.3], np.float32),
        "energy": np.array([5.0, 1.0, 4.0, np.nan], np.float32),
    }
    ground_truth = {
        "image_id": np.array([1, 1, 2]),
        "box": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float64),
        "class": np.array([0, 3, 1]),
        "images": np.array([1, 2, 3]),
        "num_known": np.asarray(3),
    }
    kept = keep_boxes(box_scores, 0.5, "paper")
    result = evaluate_open_set(box_scores, kept, ground_truth, {"energy": 2.0}, ["energy"])
    assert (result.boxes, result.kept, result.known_objects, result.unknown_objects) == (4, 3, 2, 1)
    energy = result.metrics["energy"]
    # The box on the unknown object (energy 1.0 < 2.0) is flagged and finds it; the two known
    # boxes stay: no known-labelled box on the unknown object is left.
    assert energy["unknown_recall"] == 100.0 and energy["A-OSE"] == 0.0
    assert energy["known_AP50"] == pytest.approx(100.0)
    no_flag = result.metrics[NO_FLAG]
    assert no_flag["A-OSE"] == 1.0 and no_flag["A-OSE_per_100_unknown"] == 100.0
    assert no_flag["unknown_recall"] == 0.0 and no_flag["known_AP50"] < 100.0


def test_table_lists_the_mixed_sets_rows_and_object_counts(mixed_run):
    folder, _, mixed = mixed_run
    table = format_table({"": EvaluationFolder(folder).read_results()})
    assert f"{mixed}: 6 known, 5 unknown objects" in table
    rows = [line for line in table.splitlines() if line.startswith(f"| {mixed}")]
    assert len(rows) == 1 + len(json.loads(Path(folder, "ood_results.json").read_text())["scores"])


def test_ground_truth_of_a_mixed_set_keeps_every_image_and_the_known_count(tmp_path):
    mixed = register_tiny_mixed_dataset(tmp_path / "mixed")
    arrays = open_set_ground_truth(mixed, DatasetCatalog.get(mixed))
    assert arrays["images"].tolist() == [1, 2, 3, 4, 5, 6]
    assert int(arrays["num_known"]) == 3
    assert (arrays["class"] == 3).sum() == 5 and len(arrays["class"]) == 11
