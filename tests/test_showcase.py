"""`make demo`'s entry point, end to end on a tiny synthetic benchmark (a few iterations)."""

import json
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog

from markdown_tables import markdown_tables
from vos_det.data.synthetic import SYNTHETIC_SPLITS
from vos_det.experiments import showcase
from vos_det.experiments.parallel_runs import train_and_evaluate_all
from vos_det.evaluation import EvaluationFolder
from vos_det.evaluation.open_set import METRIC_HEADERS

VARIANTS = ("vanilla", "vos")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory, pretrained_weights):
    root = tmp_path_factory.mktemp("tinysyn")
    output = root / "demo"
    overrides = [
        "SOLVER.MAX_ITER",
        4,
        "SOLVER.STEPS",
        (),
        "SOLVER.WARMUP_ITERS",
        0,
        "SOLVER.IMS_PER_BATCH",
        2,
        "DATALOADER.NUM_WORKERS",
        0,
        "VOS.START_ITER",
        2,
        "VOS.QUEUE_SIZE",
        4,
        "VOS.MIN_QUEUE_FILL",
        1,
        "VOS.NUM_CANDIDATES",
        100,
        "VOS.EVAL.SCORE_THRESHOLD",
        0.0,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",  # 4 steps: keep low-probability boxes
        0.0,
        "MODEL.WEIGHTS",
        pretrained_weights,
    ]
    arguments = [
        "--output",
        str(output),
        "--images",
        "8",
        "4",
        "4",
        "--data-root",
        str(root / "data"),
        "--jobs",
        "2",
    ]
    report = showcase.main(arguments + [str(x) for x in overrides])
    names = {split: f"demo_synthetic_{split}" for split in SYNTHETIC_SPLITS}
    return Path(report), output, names


@pytest.mark.slow
def test_demo_writes_report_with_table_and_pictures(demo_report):
    report, output, names = demo_report
    text = report.read_text()
    for variant in ("vanilla", "vos"):
        results = json.loads((output / variant / "inference" / "ood_results.json").read_text())
        assert names["ood_test"] in results["ood"]
    for name in showcase.PICTURE_SETS:
        pictures = sorted((output / "pictures" / name).glob("*.png"))
        mixed = [p for p in pictures if p.name.startswith(names["mixed_test"])]
        # 3 ID + 3 OOD test images, and the first mixed scene with known and unknown shapes
        # (known ids 0-2, unknown 3).
        assert len(pictures) == 7 and len(mixed) == 1, [p.name for p in pictures]
        records = DatasetCatalog.get(names["mixed_test"])
        both = [
            r for r in records if len({min(a["category_id"], 3) for a in r["annotations"]}) == 2
        ]
        expected = (both or records)[0]["file_name"]
        assert expected.endswith(mixed[0].name[len(names["mixed_test"]) + 1 :])
        for picture in pictures:
            assert f"pictures/{name}/{picture.name}" in text
    for word in ("vanilla", "vos", names["ood_test"], "FPR95", "AUROC", "AUPR", "AP50"):
        assert word in text


def _printed(value, digits: int = 2) -> str:
    """A number as the table prints it; "-" for none."""
    return "-" if value is None else f"{value:.{digits}f}"


@pytest.mark.slow
def test_demo_table_numbers_match_the_saved_results(demo_report):
    report, output, _ = demo_report
    results = {v: EvaluationFolder(str(output / v / "inference")).read_results() for v in VARIANTS}
    id_table, ood_table, open_set_table = markdown_tables(report.read_text())
    assert id_table == [
        {
            "run": variant,
            "ID set": result.id_dataset,
            "protocol": result.protocol,
            "threshold": _printed(result.threshold.value, 4),
            "ID boxes kept": f"{result.id_kept}/{result.id_boxes}",
            **{key: _printed(result.id_metrics.get(key)) for key in ("AP", "AP50", "AP75")},
        }
        for variant, result in results.items()
    ]
    expected = {}  # (OOD set, score) -> the row's metric cells
    for variant, result in results.items():
        for name, ood in result.ood.items():
            assert ood.metrics, f"{variant} has no metrics on {name}: nothing to compare"
            for score in result.scores:
                metrics = ood.metrics.get(score, {})
                expected.setdefault((name, score), {}).update(
                    {
                        f"{variant} {key}": _printed(metrics.get(key))
                        for key in (result.fpr_key, "AUROC", "AUPR")
                    }
                )
    # The paper's protocol (the default) marks its energy row as the paper-comparable one.
    assert {row["score"] for row in ood_table} >= {"energy (paper)", "vos"}
    labels = {f"{score} (paper)" if score == "energy" else score: score for _, score in expected}
    assert {(row.pop("OOD set"), labels[row.pop("score")]): row for row in ood_table} == expected
    assert len(ood_table) == len(expected)  # no (OOD set, score) row printed twice
    formats = {"WI": 4, "A-OSE": 0}
    expected = {}  # (mixed set, flag) -> the row's metric cells
    for variant, result in results.items():
        for name, entry in result.open_set.items():
            for flag, metrics in entry.metrics.items():
                expected.setdefault((name, flag), {}).update(
                    {
                        f"{variant} {header}": _printed(metrics.get(key), formats.get(key, 2))
                        for key, header in METRIC_HEADERS
                    }
                )
    rows = {(row.pop("mixed set"), row.pop("flagged by")): row for row in open_set_table}
    assert rows == expected
    assert {flag for _, flag in rows} == {"no flag", *results["vanilla"].scores}


@pytest.mark.slow
def test_printed_evaluation_output_goes_to_each_runs_log(demo_report):
    _, output, _ = demo_report
    for variant in ("vanilla", "vos"):
        log = (output / variant / "log.txt").read_text()
        assert "Average Precision" in log  # pycocotools' table, printed during evaluation
        assert "Starting training from iteration 0" in log


def test_jobs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        showcase.main(["--jobs", "0"])
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        train_and_evaluate_all({}, jobs=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_quick_schedule_is_a_quarter_of_the_shipped_one(variant, tmp_path):
    full = showcase.build_cfg(variant, str(tmp_path), quick=False, opts=[])
    quick = showcase.build_cfg(variant, str(tmp_path), quick=True, opts=[])
    assert quick.SOLVER.MAX_ITER == round(full.SOLVER.MAX_ITER / 4)
    assert quick.SOLVER.CHECKPOINT_PERIOD == round(full.SOLVER.CHECKPOINT_PERIOD / 4)
    assert len(quick.SOLVER.STEPS) == len(full.SOLVER.STEPS)
    # The LR steps and the uncertainty loss's start keep their place in the schedule.
    for quick_step, full_step in zip(quick.SOLVER.STEPS, full.SOLVER.STEPS):
        assert abs(quick_step / quick.SOLVER.MAX_ITER - full_step / full.SOLVER.MAX_ITER) < 0.01
    start = (
        quick.VOS.START_ITER / quick.SOLVER.MAX_ITER,
        full.VOS.START_ITER / full.SOLVER.MAX_ITER,
    )
    assert abs(start[0] - start[1]) < 0.01
    assert quick.OUTPUT_DIR == str(tmp_path / variant)
    # Overrides on the command line win over the quick schedule.
    chosen = showcase.build_cfg(variant, str(tmp_path), quick=True, opts=["SOLVER.MAX_ITER", 7])
    assert chosen.SOLVER.MAX_ITER == 7
