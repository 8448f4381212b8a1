"""tools/train_classifier.py end to end on a tiny quick run (48 training images, one epoch)."""

import json
import subprocess
import sys

import cv2
import pytest
import torch

import numpy as np
from scipy import stats

from tool_scripts import TOOLS, load_tool

train_classifier = load_tool("train_classifier")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # main() runs on one thread


def test_quick_run_writes_results_report_and_picture_and_reuses_saved_runs(tmp_path, capsys):
    output, data = tmp_path / "out", tmp_path / "data"
    argv = ["--quick", "--seeds", "2", "--output-dir", str(output), "--data-root", str(data)]
    report = train_classifier.main(argv)
    results = json.loads((output / "results.json").read_text())
    assert len(results["runs"]) == 4  # vanilla and vos, 2 seeds
    run = results["runs"][0]
    assert set(run) == {"settings", "metrics", "history", "train_seconds"}
    assert set(run["metrics"]["ood"]) == {"ood_near", "ood_far"}
    assert set(run["metrics"]["ood"]["ood_far"]["vos"]) == {"FPR95", "AUROC", "AUPR"}
    correct = run["metrics"]["accuracy"] * 12 / 100  # 12 ID test images
    assert correct == pytest.approx(round(correct), abs=1e-9)
    by_method = {r["settings"]["method"]: r for r in results["runs"]}
    assert by_method["vanilla"]["history"][0]["loss_uncertainty"] == 0.0
    assert by_method["vos"]["history"][0]["loss_uncertainty"] > 0.0
    summary = results["summary"][0]
    assert summary["seeds"] == 2 and {"mean", "std"} == set(summary["ood_near/FPR95"])
    picture = cv2.imread(str(output / "scores.png"))
    assert picture is not None and picture.shape[0] > 3 * 32
    assert "| vos | 64 | vos | 2 |" in open(report).read()
    assert "| vos | 64 | vos | 2 |" in capsys.readouterr().out
    # The paired differences: VOS's vos score minus vanilla's energy, seed by seed.
    (paired,) = results["paired"]
    by_key = {
        (r["settings"]["method"], r["settings"]["training"]["seed"]): r for r in results["runs"]
    }
    for ood_set in ("ood_near", "ood_far"):
        for metric in ("FPR95", "AUROC"):
            vos = [by_key["vos", s]["metrics"]["ood"][ood_set]["vos"][metric] for s in (1, 2)]
            base = [
                by_key["vanilla", s]["metrics"]["ood"][ood_set]["energy"][metric] for s in (1, 2)
            ]
            differences = np.subtract(vos, base)  # an independent computation, with SciPy's t
            half_width = stats.t.ppf(0.975, 1) * differences.std(ddof=1) / np.sqrt(2)
            cell = paired[f"{ood_set}/{metric}"]
            assert cell["mean"] == pytest.approx(differences.mean())
            assert cell["half_width"] == pytest.approx(half_width)
    assert "Paired by seed, VOS (vos score) minus vanilla (energy)" in open(report).read()
    # A second invocation reuses the saved runs: same records, nothing retrained.
    train_classifier.main(argv)
    assert json.loads((output / "results.json").read_text())["runs"] == results["runs"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--bottleneck-dims", "64", "0"], "--bottleneck-dims must be distinct sizes >= 1"),
        (["--method", "odin"], "invalid choice: 'odin'"),
        (["--num-select", "0"], "--num-select must be >= 1"),
    ],
)
def test_bad_options_exit_with_code_2_and_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_classifier.cli(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_data_root_holding_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("keep me")
    argv = ["--quick", "--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "o")]
    assert train_classifier.cli(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("train_classifier.py: error:") and "mine.txt" in error
    assert len(error.splitlines()) == 1
    assert (tmp_path / "data" / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
def test_the_script_exits_with_code_2_on_bad_input():
    result = subprocess.run(
        [sys.executable, str(TOOLS / "train_classifier.py"), "--epochs", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--epochs must be >= 1, got 0")
