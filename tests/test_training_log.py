"""Reading a run's last training diagnostics from its metrics.json."""

import json

import numpy as np
import pytest

from vos_det.experiments.training_log import final_training_metrics


def _write_log(folder, records):
    (folder / "metrics.json").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def test_final_metrics_average_the_records_of_the_last_iterations(tmp_path):
    records = [
        {"iteration": it, "vos/uncertainty_loss": 1.0 / (it + 1), "total_loss": 2.0}
        for it in range(19, 1000, 20)
    ]
    records[-1]["vos/uncertainty_auroc"] = 0.75  # logged on the last record only
    records.append({"iteration": 999, "synthetic_ood_test/energy/FPR95": 90.0})  # evaluation
    _write_log(tmp_path, records)
    names = ["vos/uncertainty_loss", "vos/uncertainty_auroc", "vos/feature_head_loss"]
    means = final_training_metrics(str(tmp_path), names, last_iterations=100)
    expected = np.mean([1.0 / (it + 1) for it in (919, 939, 959, 979, 999)])
    assert means == {
        "vos/uncertainty_loss": pytest.approx(expected),
        "vos/uncertainty_auroc": 0.75,
    }


def test_a_run_without_a_training_log_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json does not exist"):
        final_training_metrics(str(tmp_path), ["vos/uncertainty_loss"])
    _write_log(tmp_path, [])
    assert final_training_metrics(str(tmp_path), ["vos/uncertainty_loss"]) == {}


def test_changed_settings_name_each_key_and_skip_new_options_at_their_default():
    from vos_det.experiments.settings_diff import changed_settings

    saved = {"SOLVER": {"MAX_ITER": 100, "LR": 0.1}, "OUTPUT_DIR": "a"}
    requested = {"SOLVER": {"MAX_ITER": 200, "LR": 0.1}, "OUTPUT_DIR": "b", "VOS": {"NEW": 1}}
    assert changed_settings(saved, requested) == [
        "OUTPUT_DIR: a -> b",
        "SOLVER.MAX_ITER: 100 -> 200",
        "VOS.NEW: (none) -> 1",
    ]
    defaults = {"VOS.NEW": 1}
    assert changed_settings(saved, requested, defaults, ignored={"OUTPUT_DIR"}) == [
        "SOLVER.MAX_ITER: 100 -> 200"
    ]
    requested["VOS"]["NEW"] = 2  # a new option away from its default is a change
    assert "VOS.NEW: (none) -> 2" in changed_settings(saved, requested, defaults)
