"""What a new user hit in the tools, second round: each case ends in one clear line, before any
work, and never replaces earlier results (every test here failed before its fix)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tool_scripts import load_tool
from vos_det.config import load_vos_config
from vos_det.evaluation import EvaluationFolder, format_table

REPO = Path(__file__).resolve().parents[1]


def _run_tool(name: str, *arguments: str, timeout: int = 600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(REPO / "tools" / f"{name}.py"), *arguments]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_error(result, *fragments: str) -> str:
    """The last line of stderr of a failed tool, checked to be an error naming ``fragments``
    without a traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, last
    return last


# --- configs refused before training ---------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["VOS.FEVER.PROJECTION_DIM", 1024], r"VOS.FEVER.PROJECTION_DIM=1024 must be at most the box feature's dimension \(256"),
        (["SOLVER.MAX_ITER", 0], "SOLVER.MAX_ITER=0 must be >= 1"),
        (["VOS.NO_SUCH_KEY", 1], "Non-existent config key: VOS.NO_SUCH_KEY"),
        (["VOS.SCORE"], "Override list has odd length"),
        (
            ["VOS.FEATURE_STATS.COVARIANCE", "shrunk"],
            "VOS.FEATURE_STATS.COVARIANCE='shrunk' must be one of ridge, ledoit_wolf, oas",
        ),
    ],
)
def test_configs_that_cannot_train_are_refused_in_one_line(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_vos_config("Synthetic/scratch/vos.yaml", overrides)


def test_benchmark_options_are_checked_before_any_training(tmp_path):
    benchmark = load_tool("benchmark")
    output = ["--output", str(tmp_path / "out"), "--data-root", str(tmp_path / "data")]
    with pytest.raises(ValueError, match=r"baseline score nosuch is not computed by vanilla"):
        benchmark.main(output + ["--baseline", "vanilla", "nosuch"])
    assert not (tmp_path / "out" / "runs").exists()
    assert not (tmp_path / "out" / "results.json").exists()
    (tmp_path / "file").write_text("")
    result = _run_tool("benchmark", "--output", str(tmp_path / "file"))
    _one_line_error(result, "--output", "is a file")
    result = _run_tool("benchmark", "--methods-file", str(tmp_path / "missing.yaml"))
    _one_line_error(result, "--methods-file", "does not exist")


def test_a_data_root_holding_other_files_is_one_line(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "mine.txt").write_text("")
    result = _run_tool(
        "benchmark", "--output", str(tmp_path / "out"), "--data-root", str(root),
        "--images", "4", "2", "2", "--methods", "vanilla", "--seeds", "1",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "mine.txt" in result.stderr.strip().splitlines()[-1]
    assert (root / "mine.txt").exists()


# --- the classifier tool ---------------------------------------------------------------------


def test_classifier_runs_of_other_settings_are_refused_by_name(tmp_path):
    tool = load_tool("train_classifier")
    common = ["--quick", "--output-dir", str(tmp_path / "out"), "--data-root", str(tmp_path / "d")]
    common += ["--seeds", "1", "--method", "vos"]
    assert tool.cli(common) == 0
    record = tmp_path / "out" / "runs" / "vos_d64" / "seed1" / "run.json"
    saved = record.read_bytes()
    assert tool.cli(common + ["--loss-weight", "0.5"]) == 2
    assert record.read_bytes() == saved
    assert tool.cli(common + ["--loss-weight", "0.5", "--retrain-changed"]) == 0
    assert json.loads(record.read_text())["settings"]["vos"]["loss_weight"] == 0.5


def test_classifier_refusals_name_the_option(tmp_path, capsys):
    tool = load_tool("train_classifier")
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"vos": {"loss_weight": 0.1}}}))
    with pytest.raises(ValueError, match=r"vos\.loss_weight: 0\.1 -> 0\.5.*--retrain-changed"):
        tool.check_saved_runs([({"vos": {"loss_weight": 0.5}}, str(tmp_path))], False)
    for arguments, message in [
        (["--quick", "--epochs", "0"], "--quick sets the epochs, the width and the backbone"),
        (["--output-dir", str(tmp_path / "run.json")], "is a file; name a folder"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            tool.parse_arguments(arguments)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


# --- inference and fitting tools: weights that do not fit --------------------------------------


@pytest.fixture(scope="module")
def model_files(trained_vos_run, tmp_path_factory):
    """The session's tiny VOS model: its config file and weights, the same weights without any
    VOS state (as a stock Detectron2 checkpoint), and a folder of two images."""
    cfg, _ = trained_vos_run
    root = tmp_path_factory.mktemp("tool_models")
    weights = Path(cfg.OUTPUT_DIR) / "model_final.pth"
    state = torch.load(weights, weights_only=False)
    state["model"] = {
        k: v for k, v in state["model"].items() if ".queues." not in k and ".uncertainty." not in k
    }
    torch.save(state, root / "stock.pth")
    images = root / "images"
    images.mkdir()
    for index in range(2):
        array = np.random.default_rng(index).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"{index}.png"), array)
    return Path(cfg.OUTPUT_DIR) / "config.yaml", weights, root / "stock.pth", images


def _demo(config, weights, images, output, *extra):
    return _run_tool(
        "demo", "--config-file", str(config), "--input", str(images), "--output", str(output),
        "--confidence-threshold", "0.0", *extra, "MODEL.WEIGHTS", str(weights),
    )


@pytest.mark.slow
def test_demo_checks_the_model_before_any_image_and_keeps_earlier_outputs(model_files, tmp_path):
    config, weights, stock, images = model_files
    output = tmp_path / "out"
    output.mkdir()
    (output / "detections.json").write_text('[{"earlier": true}]')
    result = _demo(config, stock, images, output, "VOS.SCORE", "mahalanobis")
    _one_line_error(result, "mahalanobis", "need class statistics", "fit_feature_statistics.py")
    assert (output / "detections.json").read_text() == '[{"earlier": true}]'
    assert sorted(os.listdir(output)) == ["detections.json"]
    # The logit score alone needs no statistics: only what is drawn and recorded is computed.
    result = _demo(config, stock, images, output, "--scores", "msp", "VOS.SCORE", "energy")
    assert result.returncode == 0, result.stderr[-2000:]
    detections = json.loads((output / "detections.json").read_text())
    fields = set(detections[0]["detections"][0])
    assert {"id_score", "msp_score"} <= fields and "mahalanobis_score" not in fields


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (
            ["MODEL.ROI_HEADS.NUM_CLASSES", "5"],
            ["feature queues (roi_heads.box_predictor.queues) with 3 classes", "have 5 classes"],
        ),
        (
            ["MODEL.FPN.OUT_CHANNELS", "64"],
            ["does not fit the model", "backbone.fpn_lateral2.weight has shape (32,"],
        ),
        (["VOS.NOPE", "1"], ["Non-existent config key: VOS.NOPE"]),
        (["VOS.SCORE"], ["Override list has odd length"]),
    ],
)
def test_demo_refuses_weights_and_configs_that_do_not_fit(model_files, tmp_path, overrides, fragments):
    config, weights, _, images = model_files
    result = _demo(config, weights, images, tmp_path / "out", "VOS.SCORE", "energy", *overrides)
    _one_line_error(result, *fragments)
    assert "Skip loading parameter" not in result.stdout + result.stderr  # loaded once, strictly
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_fitting_refuses_weights_that_do_not_fit_and_names_the_class_count(
    model_files, tmp_path, capsys
):
    """In this process: the tiny datasets the config names are registered here only."""
    config, weights, _, _ = model_files
    fit_tool = load_tool("fit_feature_statistics")
    base = ["--config-file", str(config), "--output", str(tmp_path / "fit"), "MODEL.WEIGHTS"]

    def refused(*arguments: str) -> str:
        with pytest.raises(SystemExit) as exited:
            fit_tool.main([*base, *arguments])
        assert exited.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    last = refused(str(weights), "MODEL.FPN.OUT_CHANNELS", "64")
    assert "does not fit the model" in last and "backbone.fpn_lateral2.weight has shape" in last
    last = refused(str(weights), "MODEL.ROI_HEADS.NUM_CLASSES", "5")
    assert "has 3 classes but MODEL.ROI_HEADS.NUM_CLASSES is 5" in last
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(weights.read_bytes()[:5000])
    assert "is not a readable checkpoint" in refused(str(truncated))
    assert not (tmp_path / "fit" / "model_with_statistics.pth").exists()


@pytest.mark.slow
def test_eval_only_on_weights_without_statistics_is_one_line(model_files):
    config, _, stock, _ = model_files
    result = _run_tool(
        "train_net", "--config-file", str(config), "--eval-only", "MODEL.WEIGHTS", str(stock),
        "VOS.SCORE", "energy", "VOS.EVAL.SCORES", "('energy', 'mahalanobis')",
    )
    _one_line_error(result, "--eval-only:", "mahalanobis", "need class statistics")


@pytest.mark.slow
def test_another_models_threshold_is_named_in_a_warning(model_files, trained_vos_run, tmp_path):
    config, weights, _, images = model_files
    cfg, _ = trained_vos_run
    elsewhere = tmp_path / "other_run"
    (elsewhere / "inference").mkdir(parents=True)
    source = Path(cfg.OUTPUT_DIR) / "inference" / "ood_results.json"
    (elsewhere / "inference" / "ood_results.json").write_text(source.read_text())
    own = _demo(config, weights, images, tmp_path / "a", "--ood-threshold-from", str(source.parent))
    assert own.returncode == 0 and "another model's" not in own.stderr
    other = _demo(
        config, weights, images, tmp_path / "b", "--ood-threshold-from", str(elsewhere / "inference")
    )
    assert other.returncode == 0, other.stderr[-2000:]
    printed = (other.stdout + other.stderr).splitlines()
    warnings = [line for line in printed if "another model's" in line]
    assert len(warnings) == 1 and str(elsewhere) in warnings[0]


# --- saved evaluations ---------------------------------------------------------------------


def test_a_score_array_of_the_wrong_length_is_named(tmp_path):
    folder = EvaluationFolder(str(tmp_path))
    arrays = {"image_id": np.arange(3), "box": np.zeros((3, 4)), "energy": np.zeros(2)}
    folder.save_box_scores("set", arrays)
    with pytest.raises(ValueError, match=r"scores_set.npz: the array 'energy' has \(2,\) entries but the file holds 3 boxes"):
        folder.load_box_scores("set")


def test_runs_of_two_protocols_side_by_side_say_so(trained_vos_run, tmp_path):
    cfg, _ = trained_vos_run
    evaluate = load_tool("evaluate_ood")
    inference = str(Path(cfg.OUTPUT_DIR) / "inference")
    results = evaluate.main(["--run", f"paper={inference}", "--run", f"strict={inference}",
                             "--protocol", "strict"])
    assert {r.protocol for r in results.values()} == {"strict"}
    mixed = dict(results)
    mixed["paper"] = evaluate.recompute_run(inference, None, "paper")
    table = format_table(mixed)
    assert "paper (paper) FPR95" in table and "strict (strict) FPR95" in table
    assert "energy (paper)" not in table
    assert "not comparable" in table.splitlines()[-1]


# --- Ctrl-C ----------------------------------------------------------------------------------

_INTERRUPTING = """
import importlib, runpy, sys
module, attribute, tool = sys.argv[1:4]
def interrupted(*args, **kwargs):
    raise KeyboardInterrupt
target = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    target = getattr(target, part)
setattr(target, name, interrupted)
sys.argv = [tool, *sys.argv[4:]]
runpy.run_path(tool, run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "tool, patched, arguments, said",
    [
        ("benchmark", "vos_det.experiments.benchmark.main", [], "Finished runs are saved"),
        ("showcase", "vos_det.experiments.showcase.main", [], "pretrained weights and the generated data stay cached"),
        ("train_net", "vos_det.config.load_vos_config", ["--config-file", "c.yaml"], "add --resume"),
        ("demo", "vos_det.config.load_vos_config", ["--config-file", "c.yaml", "--input", "x.png", "--output", "o"], "nothing was written"),
        ("fit_feature_statistics", "vos_det.config.load_vos_config", ["--config-file", "c.yaml", "--output", "o"], "no checkpoint was written"),
        ("pretrain_backbone", "vos_det.pretraining.weights.pretrain_with_progress", [], "nothing was cached"),
        ("train_classifier", "vos_det.classification.generate_classification_benchmark", [], "the same command resumes"),
        ("evaluate_ood", "vos_det.evaluation.output_folder.EvaluationFolder.read_run", ["--run", "a=x"], "nothing was written"),
    ],
)
def test_ctrl_c_in_any_tool_is_one_line_saying_what_was_kept(tool, patched, arguments, said, tmp_path):
    """A KeyboardInterrupt raised inside the tool's work ends in one line, without a traceback."""
    module, _, attribute = patched.rpartition(".")
    owner, _, method = module.rpartition(".")
    if method[:1].isupper():  # a class's method: patch it on the class
        module, attribute = owner, f"{method}.{attribute}"
    script = tmp_path / "interrupting.py"
    script.write_text(_INTERRUPTING)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(script), module, attribute, str(REPO / "tools" / f"{tool}.py"), *arguments],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    printed = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, printed[-2000:]
    assert "Traceback" not in printed, printed[-2000:]
    assert said in printed.splitlines()[-1], printed[-2000:]
