"""`make demo`'s entry point, end to end on a tiny synthetic benchmark (a few iterations)."""
import importlib.util
import json
from pathlib import Path

import pytest

from vos_det.data import register_synthetic_benchmark

RUN_DEMO = Path(__file__).resolve().parents[1] / "tools" / "run_demo.py"


def _load_run_demo():
    spec = importlib.util.spec_from_file_location("run_demo", RUN_DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinysyn")
    names = register_synthetic_benchmark(
        str(root / "data"), name_prefix="tinysyn", num_train=8, num_id_test=4, num_ood_test=4
    )
    output = root / "demo"
    overrides = [
        "DATASETS.TRAIN", (names["train"],), "DATASETS.TEST", (names["id_test"], names["ood_test"]),
        "SOLVER.MAX_ITER", 4, "SOLVER.STEPS", (), "SOLVER.WARMUP_ITERS", 0,
        "SOLVER.IMS_PER_BATCH", 2, "DATALOADER.NUM_WORKERS", 0,
        "VOS.START_ITER", 2, "VOS.QUEUE_SIZE", 4, "VOS.MIN_QUEUE_FILL", 1,
        "VOS.NUM_CANDIDATES", 100, "VOS.EVAL.SCORE_THRESHOLD", 0.0,
    ]
    report = _load_run_demo().main(["--output", str(output)] + [str(x) for x in overrides])
    return Path(report), output, names


def test_demo_writes_report_with_table_and_pictures(demo_report):
    report, output, names = demo_report
    text = report.read_text()
    for variant in ("vanilla", "vos"):
        results = json.loads((output / variant / "inference" / "ood_results.json").read_text())
        assert names["ood_test"] in results["ood"]
        pictures = sorted((output / "pictures" / variant).glob("*.png"))
        assert len(pictures) == 6  # 3 ID + 3 OOD test images
        for picture in pictures:
            assert f"pictures/{variant}/{picture.name}" in text
    for word in ("vanilla", "vos", names["ood_test"], "FPR95", "AUROC", "AUPR", "AP50"):
        assert word in text


def test_demo_table_numbers_match_the_saved_results(demo_report):
    report, output, names = demo_report
    text = report.read_text()
    for variant in ("vanilla", "vos"):
        results = json.loads((output / variant / "inference" / "ood_results.json").read_text())
        fpr = results["ood"][names["ood_test"]]["metrics"]["energy"]["FPR95"]
        assert f"{fpr:.2f}" in text
