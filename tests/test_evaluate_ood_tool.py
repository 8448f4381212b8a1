"""tools/train_net.py --eval-only and tools/evaluate_ood.py on the saved scores of two runs."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detectron2.engine import default_argument_parser

from tiny_detection import TINY_OOD
from tool_scripts import load_tool
from vos_det.evaluation import EvaluationFolder, ood_metrics
from vos_det.evaluation.box_matching import ScoreThreshold
from vos_det.evaluation.protocol import evaluate_ood_protocol

REPO = Path(__file__).resolve().parents[1]


evaluate_ood = load_tool("evaluate_ood")


def _median_threshold(folder: str, id_name: str) -> float:
    """A class probability keeping at least half of the boxes of the ID set and of the OOD set."""
    return min(
        float(np.median(EvaluationFolder(folder).load_box_scores(name)["class_prob"]))
        for name in (id_name, TINY_OOD)
    )


@pytest.fixture(scope="module")
def two_runs(trained_vos_run, tiny_datasets, tmp_path_factory):
    """Two evaluation folders of the session's 6-step model: "low" (threshold 0.05, evaluated by
    the hook after training) and "median" (a threshold keeping half the boxes, evaluated by
    train_net.py --eval-only)."""
    low_cfg, _ = trained_vos_run
    low_folder = os.path.join(low_cfg.OUTPUT_DIR, "inference")
    median_cfg = low_cfg.clone()
    median_cfg.defrost()
    median_cfg.OUTPUT_DIR = str(tmp_path_factory.mktemp("median"))
    median_cfg.MODEL.WEIGHTS = os.path.join(low_cfg.OUTPUT_DIR, "model_final.pth")
    median_cfg.VOS.EVAL.SCORE_THRESHOLD = _median_threshold(low_folder, tiny_datasets[1])
    config_file = Path(median_cfg.OUTPUT_DIR) / "eval.yaml"
    config_file.write_text(median_cfg.dump())
    args = default_argument_parser().parse_args(["--config-file", str(config_file), "--eval-only"])
    eval_only_results = load_tool("train_net").main(args)
    folders = {"low": low_folder, "median": os.path.join(median_cfg.OUTPUT_DIR, "inference")}
    return folders, eval_only_results, median_cfg.VOS.EVAL.SCORE_THRESHOLD


def _saved(folder: str) -> dict:
    return json.loads(Path(folder, "ood_results.json").read_text())


@pytest.mark.slow
def test_train_net_eval_only_runs_the_ood_protocol(two_runs, trained_vos_run, tiny_datasets):
    folders, results, threshold = two_runs
    saved = _saved(folders["median"])
    assert saved["threshold"] == {"value": threshold, "source": "fixed", "per_class": {}}
    assert 2 * saved["id_kept"] >= saved["id_boxes"] > 0
    assert 2 * saved["ood"][TINY_OOD]["kept"] >= saved["ood"][TINY_OOD]["boxes"] > 0
    assert results[tiny_datasets[1]]["ood_protocol"]["threshold"] == threshold
    assert results[tiny_datasets[1]]["bbox"]["AP"] == saved["id_metrics"]["AP"]
    for score in trained_vos_run[0].VOS.EVAL.SCORES:
        assert results[TINY_OOD][score] == saved["ood"][TINY_OOD]["metrics"][score]


@pytest.mark.slow
def test_tool_reproduces_both_runs_side_by_side(two_runs, tmp_path, capsys):
    folders, _, _ = two_runs
    out = tmp_path / "table.json"
    results = evaluate_ood.main(
        [f"--run=low={folders['low']}", "--run", f"median={folders['median']}"]
        + ["--json", str(out)]
    )
    for name, folder in folders.items():
        assert results[name].to_dict() == _saved(folder)
    assert json.loads(out.read_text()) == {name: _saved(folder) for name, folder in folders.items()}
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "OOD set" in line)
    assert header.index("low FPR95") < header.index("median FPR95")
    row = next(line for line in lines if TINY_OOD in line and "| msp " in line)
    expected = [
        f"{_saved(folders[run])['ood'][TINY_OOD]['metrics']['msp'][key]:.2f}"
        for run in ("low", "median")
        for key in ("FPR95", "AUROC", "AUPR")
    ]
    assert [cell.strip() for cell in row.split("|")[3:-1]] == expected


@pytest.mark.slow
def test_threshold_override_applies_to_the_saved_scores(two_runs, trained_vos_run, tiny_datasets):
    folders, _, _ = two_runs
    threshold = _median_threshold(folders["low"], tiny_datasets[1])
    result = evaluate_ood.main(
        ["--run", f"low={folders['low']}", "--threshold", repr(threshold), "--protocol", "strict"]
    )
    result = result["low"]
    id_arrays = EvaluationFolder(folders["low"]).load_box_scores(tiny_datasets[1])
    ood_arrays = EvaluationFolder(folders["low"]).load_box_scores(TINY_OOD)
    id_kept = id_arrays["class_prob"] >= threshold
    ood_kept = ood_arrays["class_prob"] >= threshold
    assert (result.threshold.value, result.threshold.source) == (threshold, "fixed")
    assert result.id_kept == np.count_nonzero(id_kept) > 0
    assert result.ood[TINY_OOD].kept == np.count_nonzero(ood_kept) > 0
    for score in trained_vos_run[0].VOS.EVAL.SCORES:
        assert result.ood[TINY_OOD].metrics[score] == ood_metrics(
            id_arrays[score][id_kept], ood_arrays[score][ood_kept], 0.95, protocol="strict"
        )


def _boxes(rng, num_boxes, shift):
    """Per-box arrays of a set: each box's proposal probability at or above its own."""
    class_prob = rng.uniform(0, 1, num_boxes).astype(np.float32)
    return {
        "image_id": np.arange(num_boxes),
        "box": np.zeros((num_boxes, 4), dtype=np.float32),
        "pred_class": rng.integers(0, 3, num_boxes),
        "class_prob": class_prob,
        "max_class_prob": np.maximum(class_prob, rng.uniform(0, 1, num_boxes)).astype(np.float32),
        "energy": rng.normal(shift, 1, num_boxes).astype(np.float32),
    }


@pytest.mark.parametrize("source", ["fixed", "paper_f1"])
def test_protocol_override_recomputes_the_strict_numbers(tmp_path, caplog, source):
    rng = np.random.default_rng(0)
    id_boxes, ood_boxes = _boxes(rng, 60, 1.0), _boxes(rng, 50, 0.0)
    folder = EvaluationFolder(str(tmp_path))
    folder.save_box_scores("id", id_boxes)
    folder.save_box_scores("ood", ood_boxes)
    threshold = ScoreThreshold(0.4, source)
    saved = evaluate_ood_protocol("id", id_boxes, {"ood": ood_boxes}, threshold, ["energy"])
    folder.write_results(saved)
    assert saved.protocol == "paper"
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        results = evaluate_ood.main(
            ["--run", f"a={tmp_path}", "--run", f"b={tmp_path}"] + ["--protocol", "strict"]
        )
    id_kept, ood_kept = id_boxes["class_prob"] >= 0.4, ood_boxes["class_prob"] >= 0.4
    expected = ood_metrics(
        id_boxes["energy"][id_kept], ood_boxes["energy"][ood_kept], 0.95, protocol="strict"
    )
    assert results["a"].protocol == "strict" and results["a"].threshold == threshold
    assert results["a"].id_kept == np.count_nonzero(id_kept)
    assert (
        results["a"].ood["ood"].metrics["energy"] == expected != saved.ood["ood"].metrics["energy"]
    )
    derived_warning = "was derived under the paper protocol (paper_f1) and is kept"
    assert (derived_warning in caplog.text) == (source == "paper_f1")
    assert evaluate_ood.main(["--run", f"a={tmp_path}"])["a"] == saved  # the saved protocol


def test_tool_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="ood_results.json not found"):
        evaluate_ood.main(["--run", f"empty={tmp_path}"])
    with pytest.raises(SystemExit):
        evaluate_ood.main(["--run", "no-equals-sign"])
    with pytest.raises(SystemExit, match="must differ"):
        evaluate_ood.main(["--run", f"a={tmp_path}", "--run", f"a={tmp_path}"])


@pytest.mark.slow
def test_tool_runs_from_the_command_line(two_runs):
    folders, _, _ = two_runs
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "evaluate_ood.py")]
        + [f"--run=low={folders['low']}", f"--run=median={folders['median']}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "low FPR95" in done.stdout and "median FPR95" in done.stdout
