"""`make benchmark`: seed statistics against scipy, the method grid, and the tool end to end on a
tiny synthetic benchmark (2 methods x 2 seeds, a few iterations)."""

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from detectron2.data import MetadataCatalog
from scipy import stats
from sklearn.metrics import roc_curve

from markdown_tables import markdown_tables
import vos_det
from vos_det.data.synthetic import SyntheticBenchmarkSpec
from vos_det.data.synthetic_draws import synthetic_benchmark_setup, synthetic_draw_name
from vos_det.experiments.parallel_runs import train_and_evaluate_all
from vos_det.experiments.training_log import TRAINING_DIAGNOSTICS, final_training_metrics
from vos_det.experiments.method_grid import (
    ChangedRunsError,
    Method,
    grid_runs,
    load_methods,
    parse_method,
    plan_runs,
    prepare_run,
    write_run_record,
)
from vos_det.config import load_vos_config
from vos_det.evaluation import EvaluationFolder, ProtocolResult
from vos_det.evaluation.box_matching import ScoreThreshold
from vos_det.evaluation.protocol import OODSetResult, keep_boxes
from vos_det.evaluation.score_collector import empty_box_scores
from vos_det.experiments import benchmark
from vos_det.experiments.seed_statistics import paired_t_interval, summarize

TINY_OVERRIDES = [
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.STEPS",
    "()",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "VOS.START_ITER",
    "1",
    "VOS.QUEUE_SIZE",
    "4",
    "VOS.MIN_QUEUE_FILL",
    "1",
    "VOS.NUM_CANDIDATES",
    "100",
    "VOS.EVAL.SCORE_THRESHOLD",
    "0.0",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",  # 3 steps from scratch: keep low-probability boxes
    "0.0",
    "VOS.EVAL.SAVE_PLOTS",
    "False",
]
METRICS = ("AP", "AP50", "FPR95", "AUROC", "AUPR")


# --- statistics ---------------------------------------------------------------------------


def test_summary_is_the_mean_and_the_sample_std():
    values = [91.2, 88.4, 93.9, 90.0]
    summary = summarize(values)
    assert summary.n == 4
    assert summary.mean == pytest.approx(np.mean(values), abs=1e-12)
    assert summary.std == pytest.approx(stats.tstd(values), abs=1e-12)  # ddof=1
    assert math.isnan(summarize([5.0]).std)
    with pytest.raises(ValueError, match="at least 1"):
        summarize([])
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, float("nan")])


@pytest.mark.parametrize("n, confidence", [(2, 0.95), (3, 0.95), (5, 0.9), (12, 0.99)])
def test_paired_t_interval_matches_scipy(n, confidence):
    rng = np.random.default_rng(n)
    baseline = rng.normal(90, 3, n)
    values = baseline + rng.normal(-2, 1.5, n)
    interval = paired_t_interval(values, baseline, confidence)
    differences = values - baseline
    low, high = stats.t.interval(
        confidence, n - 1, loc=differences.mean(), scale=stats.sem(differences)
    )
    assert (interval.n, interval.confidence) == (n, confidence)
    assert interval.low == pytest.approx(low, abs=1e-9)
    assert interval.high == pytest.approx(high, abs=1e-9)
    assert interval.excludes_zero == (low > 0 or high < 0)


def test_paired_t_interval_needs_two_pairs_of_equal_length():
    with pytest.raises(ValueError, match="at least 2"):
        paired_t_interval([1.0], [2.0])
    with pytest.raises(ValueError, match="pair up seed by seed, got 3 and 2"):
        paired_t_interval([1.0, 2.0, 3.0], [1.0, 2.0])


# --- methods, draws and the grid ----------------------------------------------------------


def test_the_shipped_methods_file_lists_vanilla_and_vos_and_every_method_builds(tmp_path):
    methods = load_methods(benchmark.METHODS_FILE)
    assert list(methods)[:2] == ["vanilla", "vos"]
    assert methods["vos"].config == "Synthetic/vos.yaml"
    runs = grid_runs(list(methods.values()), [1], str(tmp_path), [])
    assert [run.cfg.VOS.ENABLED for run in runs[:2]] == [False, True]


def test_the_synthesis_methods_file_reuses_the_default_grid_and_every_method_builds(tmp_path):
    methods = load_methods(vos_det.model_zoo.get_config_file("Synthetic/synthesis_methods.yaml"))
    default = load_methods(benchmark.METHODS_FILE)
    for name, method in default.items():  # the same runs: reused from the default grid
        assert (methods[name].config, methods[name].overrides) == (method.config, method.overrides)
    runs = {
        run.method.name: run.cfg
        for run in grid_runs(list(methods.values()), [1], str(tmp_path), [])
    }
    assert runs["vos_mlp"].VOS.ENERGY_HEAD.HIDDEN_DIM == 512
    assert runs["vos_fever"].VOS.FEVER.PENALTY == "least_singular_value"
    assert runs["vos_boundary"].VOS.SYNTHESIS == "boundary"
    assert "feature_head" in runs["vos_boundary_w1"].VOS.EVAL.SCORES


def test_methods_from_the_command_line_and_from_a_file(tmp_path):
    method = parse_method("vos_w05=Synthetic/vos.yaml VOS.LOSS_WEIGHT 0.5 SOLVER.STEPS '(2,)'")
    assert method == Method(
        "vos_w05", "Synthetic/vos.yaml", ("VOS.LOSS_WEIGHT", "0.5", "SOLVER.STEPS", "(2,)")
    )
    with pytest.raises(ValueError, match="NAME=CONFIG"):
        parse_method("Synthetic/vos.yaml VOS.LOSS_WEIGHT 0.5")
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        parse_method("w=Synthetic/vos.yaml VOS.LOSS_WEIGHT")
    with pytest.raises(ValueError, match="names the run folders"):
        parse_method("../up=Synthetic/vos.yaml")
    path = tmp_path / "methods.yaml"
    path.write_text(
        "methods:\n  w:\n    config: Synthetic/vos.yaml\n    overrides: {VOS.LOSS_WEIGHT: 0.5}\n"
    )
    assert load_methods(str(path))["w"].overrides == ("VOS.LOSS_WEIGHT", 0.5)
    path.write_text("methods:\n  w:\n    config: Synthetic/vos.yaml\n    override: {}\n")
    with pytest.raises(ValueError, match=r"methods.yaml: method 'w' must be a mapping"):
        load_methods(str(path))


def test_draws_have_their_own_names_and_folders(tmp_path, monkeypatch):
    assert synthetic_draw_name(SyntheticBenchmarkSpec()) == "synthetic"
    assert synthetic_draw_name(SyntheticBenchmarkSpec(seed=3)) == "synthetic_seed3"
    assert synthetic_draw_name(SyntheticBenchmarkSpec(8, 4, 4, seed=1)) == "synthetic_8_4_4_seed1"
    assert synthetic_draw_name(SyntheticBenchmarkSpec(image_size=256)) == "synthetic_256px"
    assert synthetic_benchmark_setup() == (
        {split: f"synthetic_{split}" for split in ("train", "id_test", "ood_test", "mixed_test")},
        None,
    )
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    names, setup = synthetic_benchmark_setup(data_seed=2)
    assert names["ood_test"] == "synthetic_seed2_ood_test"
    json_file = MetadataCatalog.get(names["train"]).json_file
    assert json_file == os.path.join(str(tmp_path), "synthetic_seed2", "annotations", "train.json")
    assert pickle.loads(pickle.dumps(setup))() == names  # registers again in a fresh process
    assert not (tmp_path / "synthetic_seed2").exists()  # generated on first load only


def test_grid_configs_name_the_method_when_they_cannot_be_built(tmp_path):
    runs = grid_runs(
        [Method("w", "Synthetic/vos.yaml", ("VOS.LOSS_WEIGHT", 0.5))], [4], str(tmp_path), []
    )
    assert (runs[0].name, runs[0].cfg.SEED, runs[0].cfg.VOS.LOSS_WEIGHT) == ("w/seed4", 4, 0.5)
    assert runs[0].folder == str(tmp_path / "runs" / "w" / "seed4")
    with pytest.raises(ValueError, match=r"Method bad .*nope\.yaml is not a config shipped"):
        grid_runs([Method("bad", "Synthetic/nope.yaml")], [1], str(tmp_path), [])
    with pytest.raises(ValueError, match="Method bad .*VOS.NO_SUCH_KEY"):
        grid_runs(
            [Method("bad", "Synthetic/vos.yaml", ("VOS.NO_SUCH_KEY", 1))], [1], str(tmp_path), []
        )
    with pytest.raises(
        ValueError, match="the overrides set SEED, which the grid sets from the training seeds"
    ):
        grid_runs([Method("v", "Synthetic/vos.yaml")], [1], str(tmp_path), ["SEED", 3])


def _finish(run) -> None:
    """Write what a finished run holds: weights, training log, evaluation and record."""
    prepare_run(run)
    Path(run.folder, "model_final.pth").write_bytes(b"weights")
    Path(run.folder, "metrics.json").write_text('{"iteration": 0}\n')
    result = ProtocolResult(
        id_dataset="id",
        threshold=ScoreThreshold(0.5, "fixed"),
        tpr=0.95,
        scores=["energy"],
        id_boxes=0,
        id_kept=0,
        id_metrics={},
        ood={"ood": OODSetResult(0, 0, {})},
    )
    run.evaluation.write_results(result)
    for dataset in ("id", "ood"):
        run.evaluation.save_box_scores(dataset, empty_box_scores(["energy"]))
    write_run_record(run, 1.0)


def test_saved_runs_are_reused_rerun_or_refused_by_their_config(tmp_path, caplog):
    method = Method("v", "Synthetic/vanilla.yaml")
    saved, interrupted, unfinished = grid_runs(
        [method], [1, 2, 3], str(tmp_path), ["SOLVER.MAX_ITER", 4]
    )
    for run in (saved, interrupted):
        _finish(run)
    os.remove(Path(interrupted.folder, "run_record.json"))
    assert plan_runs([saved, interrupted, unfinished]) == [interrupted, unfinished]
    changed = grid_runs([method], [1], str(tmp_path), ["SOLVER.MAX_ITER", 6])[0]
    with pytest.raises(
        ChangedRunsError, match=r"v/seed1 \(SOLVER.MAX_ITER: 4 -> 6\).*--rerun-changed"
    ):
        plan_runs([changed])
    assert plan_runs([changed], rerun_changed=True) == [changed]
    assert "Training again 1 run(s) whose config changed" in caplog.text


@pytest.mark.parametrize(
    "damage, named",
    [
        ("inference/ood_results.json", "ood_results.json is not valid JSON"),
        ("run_record.json", "run_record.json is not a readable run record"),
        ("inference/scores_ood.npz", "scores_ood.npz is not a readable score file"),
        ("metrics.json", "metrics.json is missing"),
        ("model_final.pth", "model_final.pth is missing"),
    ],
)
def test_a_damaged_run_is_named_and_trained_again(tmp_path, caplog, damage, named):
    run = grid_runs([Method("v", "Synthetic/vanilla.yaml")], [1], str(tmp_path), [])[0]
    _finish(run)
    assert plan_runs([run]) == []
    path = Path(run.folder, damage)
    if damage.endswith((".pth", "metrics.json")):
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert plan_runs([run]) == [run]
    assert "Training v/seed1 again: its saved run is incomplete" in caplog.text
    assert named in caplog.text


def test_a_run_trained_again_starts_from_an_empty_folder(tmp_path):
    """Its training log used to be appended to, mixing the old run's iterations in."""
    run = grid_runs([Method("v", "Synthetic/vanilla.yaml")], [1], str(tmp_path), [])[0]
    _finish(run)
    Path(run.folder, "model_0000099.pth").write_bytes(b"an old checkpoint")
    prepare_run(run)
    assert sorted(os.listdir(run.folder)) == ["config.yaml"]


def test_keys_added_since_a_run_count_as_unchanged_at_their_defaults(tmp_path):
    method = Method("v", "Synthetic/vanilla.yaml")
    run = grid_runs([method], [1], str(tmp_path), [])[0]
    _finish(run)
    # The run as saved by a vos_det without the VOS.FEVER options.
    saved = yaml.safe_load(Path(run.folder, "config.yaml").read_text())
    del saved["VOS"]["FEVER"]
    Path(run.folder, "config.yaml").write_text(yaml.safe_dump(saved))
    record = json.loads(Path(run.folder, "run_record.json").read_text())
    record["config_sha256"] = "an older config's"
    Path(run.folder, "run_record.json").write_text(json.dumps(record))
    assert plan_runs([run]) == []
    projected = grid_runs([method], [1], str(tmp_path), ["VOS.FEVER.PROJECTION_DIM", 8])[0]
    with pytest.raises(ChangedRunsError, match=r"VOS.FEVER.PROJECTION_DIM: \(none\) -> 8"):
        plan_runs([projected])


def test_a_failed_run_is_named(tmp_path):
    cfg = load_vos_config(
        "Synthetic/vanilla.yaml", ["DATASETS.TRAIN", ("no_such_set",)], str(tmp_path)
    )
    finished = []
    with pytest.raises(RuntimeError, match=r"Run broken failed .*no_such_set.*log\.txt"):
        train_and_evaluate_all({"broken": cfg}, 1, on_finished=lambda *run: finished.append(run))
    assert finished == []


def test_bad_methods_are_refused_before_anything_runs(tmp_path):
    output = ["--output", str(tmp_path / "out")]
    with pytest.raises(
        ValueError, match=r"Unknown method\(s\) \['SOLVER.MAX_ITER', '4'\].*need --"
    ):
        benchmark.main(output + ["--methods", "vanilla", "SOLVER.MAX_ITER", "4"])
    with pytest.raises(ValueError, match="baseline method vanilla is not among"):
        benchmark.main(output + ["--methods", "vos"])
    with pytest.raises(ValueError, match="--method vos is already defined"):
        benchmark.main(output + ["--method", "vos=Synthetic/vos.yaml"])
    with pytest.raises(ValueError, match="Method typo .*typo.yaml is not a config shipped"):
        benchmark.main(output + ["--method", "typo=Synthetic/typo.yaml"])
    assert not (tmp_path / "out" / "runs").exists()


# --- the tool end to end ------------------------------------------------------------------


def _invoke(root: Path, weights: str, *overrides: str):
    """The tool on the tiny draw of data seed 1, methods vanilla and vos, seeds 1 and 2,
    fine-tuning ``weights``."""
    arguments = ["--output", str(root / "out"), "--images", "8", "4", "4", "--data-seed", "1"]
    arguments += ["--data-root", str(root / "data"), "--jobs", "2", "--seeds", "2"]
    arguments += ["--baseline", "vanilla", "energy", "--baseline", "vos", "energy"]
    return benchmark.main(arguments + ["--", *TINY_OVERRIDES, "MODEL.WEIGHTS", weights, *overrides])


def _record_times(output: Path) -> dict:
    return {str(path): path.stat().st_mtime_ns for path in output.glob("runs/*/*/run_record.json")}


@pytest.fixture(scope="module")
def first_invocation(tmp_path_factory, pretrained_weights):
    root = tmp_path_factory.mktemp("benchmark")
    return root, _invoke(root, pretrained_weights)


@pytest.mark.slow
def test_results_hold_every_run_with_its_saved_numbers(first_invocation):
    root, done = first_invocation
    assert sorted(done.trained) == ["vanilla/seed1", "vanilla/seed2", "vos/seed1", "vos/seed2"]
    rows = json.loads(Path(done.results).read_text())["runs"]
    assert [(row["method"], row["seed"], row["data_seed"]) for row in rows] == [
        ("vanilla", 1, 1),
        ("vanilla", 2, 1),
        ("vos", 1, 1),
        ("vos", 2, 1),
    ]
    for row in rows:
        folder = root / "out" / "runs" / row["method"] / f"seed{row['seed']}"
        record = json.loads((folder / "run_record.json").read_text())
        saved = EvaluationFolder(str(folder / "inference")).read_results()
        assert row["wall_seconds"] == record["wall_seconds"] > 0
        assert row["config_sha256"] == record["config_sha256"]
        assert (row["protocol"], row["id_dataset"], row["fpr_key"]) == (
            saved.protocol,
            "synthetic_8_4_4_seed1_id_test",
            "FPR95",
        )
        assert row["id_metrics"] == pytest.approx(saved.id_metrics)
        # The FPR95 recomputed from the saved boxes with scikit-learn's ROC: the FPR at the ROC
        # point whose TPR is closest to 95% (the paper protocol).
        run = EvaluationFolder(str(folder / "inference")).read_run()
        kept_id = keep_boxes(run.id_box_scores, saved.threshold.value, saved.protocol)
        ood_set = "synthetic_8_4_4_seed1_ood_test"
        kept_ood = keep_boxes(run.ood_box_scores[ood_set], saved.threshold.value, saved.protocol)
        labels = np.r_[np.ones(len(kept_id["box"])), np.zeros(len(kept_ood["box"]))]
        scores = np.r_[kept_id["energy"], kept_ood["energy"]]
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
        expected = 100 * fpr[np.argmin(np.abs(tpr - 0.95))]
        assert row["ood"][ood_set]["energy"]["FPR95"] == pytest.approx(expected)


def _summary_cell(values: list, total: int) -> str:
    if not values:
        return "-"
    text = f"{np.mean(values):.2f}" + (
        f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
    )
    return text + (f" (n={len(values)})" if len(values) < total else "")


def _difference_cell(pairs: list, total: int) -> str:
    if len(pairs) < 2:
        return "-"
    differences = np.array([value - base for value, base in pairs])
    half = stats.t.ppf(0.975, len(pairs) - 1) * stats.sem(differences)
    text = f"{differences.mean():+.2f} ± {half:.2f}"
    if differences.mean() - half > 0 or differences.mean() + half < 0:
        text = f"**{text}**"
    return text + (f" (n={len(pairs)})" if len(pairs) < total else "")


def _metric(row: dict, ood_set: str, score: str, metric: str):
    if metric in ("AP", "AP50"):
        return row["id_metrics"].get(metric)
    return row["ood"][ood_set].get(score, {}).get(metric)


def _expected_differences(rows: list, ood_set: str, baseline: tuple) -> list:
    """The paired-difference table's rows, computed from the results."""
    base_method, base_score = baseline
    expected = []
    for method in ("vanilla", "vos"):
        runs = [row for row in rows if row["method"] == method]
        for score in runs[0]["ood"][ood_set]:
            if (method, score) == baseline:
                continue
            cells = {}
            for m in METRICS:
                pairs = []
                for row in runs:
                    base = next(
                        b for b in rows if b["method"] == base_method and b["seed"] == row["seed"]
                    )
                    pair = (_metric(row, ood_set, score, m), _metric(base, ood_set, base_score, m))
                    pairs += [pair] if None not in pair else []
                cells[f"Δ{m}"] = _difference_cell(pairs, 2)
            expected.append({"method": method, "score": score, "seeds": "2", **cells})
    return expected


OPEN_SET_HEADERS = {
    "known_AP": "known AP",
    "known_AP50": "known AP50",
    "unknown_AP50": "unknown AP50",
    "unknown_recall": "unknown recall",
    "WI": "WI x100",
    "A-OSE": "A-OSE",
    "A-OSE_per_100_unknown": "A-OSE /100 unknown",
}


def _open_set_value(row: dict, mixed_set: str, flag: str, key: str):
    """A run's open-set metric as the report shows it (WI x100); None when it has none."""
    value = row["open_set"][mixed_set][flag].get(key)
    return value * 100 if value is not None and key == "WI" else value


def _expected_open_set_tables(rows: list, mixed_set: str) -> list:
    """The open-set summary and its paired differences to vanilla + energy and vos + energy,
    computed from the results."""
    summary, differences = [], {("vanilla", "energy"): [], ("vos", "energy"): []}
    for method in ("vanilla", "vos"):
        runs = [row for row in rows if row["method"] == method]
        for flag in runs[0]["open_set"][mixed_set]:
            values = {
                key: [_open_set_value(row, mixed_set, flag, key) for row in runs]
                for key in OPEN_SET_HEADERS
            }
            cells = {
                OPEN_SET_HEADERS[key]: _summary_cell([v for v in vals if v is not None], 2)
                for key, vals in values.items()
            }
            summary.append({"method": method, "flagged by": flag, "seeds": "2", **cells})
            for baseline, table in differences.items():
                if (method, flag) == baseline:
                    continue
                cells = {}
                for key, header in OPEN_SET_HEADERS.items():
                    pairs = []
                    for row in runs:
                        base = next(
                            b
                            for b in rows
                            if b["method"] == baseline[0] and b["seed"] == row["seed"]
                        )
                        pair = (
                            _open_set_value(row, mixed_set, flag, key),
                            _open_set_value(base, mixed_set, baseline[1], key),
                        )
                        pairs += [pair] if None not in pair else []
                    cells[f"Δ{header}"] = _difference_cell(pairs, 2)
                table.append({"method": method, "flagged by": flag, "seeds": "2", **cells})
    return [summary, *differences.values()]


@pytest.mark.slow
def test_report_numbers_are_the_statistics_of_the_results(first_invocation):
    root, done = first_invocation
    rows = json.loads(Path(done.results).read_text())["runs"]
    ood_set = "synthetic_8_4_4_seed1_ood_test"
    tables = markdown_tables(Path(done.report).read_text())
    _, summary, to_vanilla, to_vos, kept, fprs, passes, *open_set, diagnostics = tables
    assert open_set == _expected_open_set_tables(rows, "synthetic_8_4_4_seed1_mixed_test")
    expected_summary = []
    for method in ("vanilla", "vos"):
        runs = [row for row in rows if row["method"] == method]
        for score in runs[0]["ood"][ood_set]:
            values = {m: [_metric(row, ood_set, score, m) for row in runs] for m in METRICS}
            cells = {m: _summary_cell([v for v in values[m] if v is not None], 2) for m in METRICS}
            expected_summary.append({"method": method, "score": score, "seeds": "2", **cells})
    assert summary == expected_summary
    assert to_vanilla == _expected_differences(rows, ood_set, ("vanilla", "energy"))
    assert to_vos == _expected_differences(rows, ood_set, ("vos", "energy"))
    # vanilla logs no head diagnostics; vos's cells are the seeds' final training metrics.
    assert [row["method"] for row in diagnostics] == ["vos"]
    for name, label in TRAINING_DIAGNOSTICS.items():
        if label in diagnostics[0]:
            values = [
                final_training_metrics(str(root / "out" / "runs" / "vos" / f"seed{seed}"), [name])
                for seed in (1, 2)
            ]
            expected = summarize([value[name] for value in values])
            assert diagnostics[0][label] == f"{expected.mean:.3f} ± {expected.std:.3f}"
    assert "energy head loss" in diagnostics[0] and "its chance level" in diagnostics[0]
    # What the numbers are made of: every kept OOD box in one class, energy's passing share.
    for row in kept:
        saved = [r for r in rows if r["method"] == row["method"]]
        counts = [float(v) for k, v in row.items() if k.startswith("kept OOD boxes") and v != "-"]
        folders = [
            root / "out" / "runs" / r["method"] / f"seed{r['seed']}" / "inference" for r in saved
        ]
        kept_boxes = [EvaluationFolder(str(f)).read_results().ood[ood_set].kept for f in folders]
        assert sum(counts) == pytest.approx(np.mean(kept_boxes), abs=0.5 * len(counts))
    assert {row["method"] for row in fprs} == {"vanilla", "vos"}
    assert {row["score"] for row in passes} <= {"energy", "mahalanobis", "crop_mahalanobis"}


@pytest.mark.slow
def test_report_shows_the_fpr_plot_and_the_first_seeds_roc_curves(first_invocation):
    root, done = first_invocation
    text = Path(done.report).read_text()
    for name in (
        "fpr_synthetic_8_4_4_seed1_ood_test.png",
        "roc_seed1_synthetic_8_4_4_seed1_ood_test.png",
    ):
        assert f"](plots/{name})" in text
        assert (root / "out" / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_each_run_logs_to_its_own_log_only(first_invocation):
    # Two workers train four runs: each worker process trains two runs one after the other.
    root, _ = first_invocation
    folders = sorted((root / "out" / "runs").glob("*/seed*"))
    assert len(folders) == 4
    for folder in folders:
        log = (folder / "log.txt").read_text()
        assert f"Saving checkpoint to {folder}" in log
        for other in folders:
            if other != folder:
                assert str(other) not in log, f"{other}'s lines are in {folder}/log.txt"


@pytest.mark.slow
def test_the_same_command_again_trains_nothing_and_a_changed_one_is_refused(
    first_invocation, pretrained_weights, capsys
):
    root, done = first_invocation
    before = _record_times(root / "out")
    assert len(before) == 4
    again = _invoke(root, pretrained_weights)
    assert again.trained == []
    assert _record_times(root / "out") == before
    assert "synthetic_8_4_4_seed1_ood_test: mean ± std" in capsys.readouterr().out
    with pytest.raises(
        ChangedRunsError, match=r"4 saved run\(s\) .*VOS.EVAL.SCORE_THRESHOLD: 0.0 -> 0.01"
    ):
        _invoke(root, pretrained_weights, "VOS.EVAL.SCORE_THRESHOLD", "0.01")
    assert _record_times(root / "out") == before


def _sigint_as_from_a_terminal() -> None:
    """Run in the child before exec: SIGINT's default disposition, as under a terminal. A test
    run started in the background by a non-interactive shell (``make test &`` in a CI script)
    hands SIGINT on as ignored, and a child would then never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_the_same_command_resumes(tmp_path, pretrained_weights):
    """Ctrl-C reaches the terminal's whole process group: the tool and its two workers stop,
    the tool says how to resume, and the next invocation trains the interrupted runs again."""
    repo = Path(__file__).resolve().parents[1]
    arguments = [
        sys.executable,
        str(repo / "tools" / "benchmark.py"),
        "--output",
        str(tmp_path / "out"),
    ]
    arguments += ["--images", "8", "4", "4", "--data-root", str(tmp_path / "data"), "--jobs", "2"]
    arguments += ["--seeds", "1", "--", *TINY_OVERRIDES, "MODEL.WEIGHTS", pretrained_weights]
    long_runs = arguments + ["SOLVER.MAX_ITER", "100000"]
    env = dict(os.environ, PYTHONPATH=str(repo))
    tool = subprocess.Popen(
        long_runs,
        cwd=repo,
        env=env,
        start_new_session=True,
        preexec_fn=_sigint_as_from_a_terminal,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    metrics = [
        tmp_path / "out" / "runs" / method / "seed1" / "metrics.json"
        for method in ("vanilla", "vos")
    ]
    deadline = time.monotonic() + 300
    while not all(path.exists() for path in metrics):  # both workers are training
        assert tool.poll() is None and time.monotonic() < deadline, tool.communicate()
        time.sleep(1)
    os.killpg(tool.pid, signal.SIGINT)
    _, stderr = tool.communicate(timeout=120)
    assert tool.returncode == 1 and "interrupted" in stderr.strip().splitlines()[-1]
    time.sleep(2)
    with pytest.raises(ProcessLookupError):  # no process of the group outlived the tool
        os.killpg(tool.pid, 0)
    assert not list((tmp_path / "out" / "runs").glob("*/seed1/run_record.json"))
    again = subprocess.run(
        arguments, cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted(row["method"] for row in results["runs"]) == ["vanilla", "vos"]
