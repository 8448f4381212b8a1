"""tools/train_net.py: --eval-only refuses to run without weights, vos_det's logs are shown."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_detection import TINY_OOD, tiny_cfg
from tool_scripts import load_tool

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "tools" / "train_net.py"

# Registers the tiny ID test set and OOD set as conftest.py and test_ood_evaluator.py do (same
# seeds, so the same images), then runs train_net.py as a command.
_RUN_WITH_TINY_DATASETS = """
import runpy, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tiny_detection import register_tiny_dataset, register_tiny_ood_dataset
register_tiny_dataset({id_name!r}, Path({root!r}) / "test", 6, seed=1)
register_tiny_ood_dataset(Path({root!r}) / "ood")
sys.argv = [{train_net!r}, *{arguments!r}]
runpy.run_path({train_net!r}, run_name="__main__")
"""


def _run(command: list, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def _config_file(tmp_path: Path) -> Path:
    """The tiny config as a YAML file; its output folder is ``tmp_path / "output"``."""
    config = tmp_path / "config.yaml"
    config.write_text(tiny_cfg("vos_tiny_train", "vos_tiny_test", str(tmp_path / "output")).dump())
    return config


@pytest.mark.slow
def test_eval_only_without_weights_is_a_usage_error_on_the_command_line(tmp_path):
    """It used to evaluate a randomly initialised model and exit 0."""
    command = [sys.executable, str(TRAIN_NET), "--config-file", str(_config_file(tmp_path))]
    result = _run(command + ["--eval-only", "MODEL.WEIGHTS", ""])
    assert result.returncode == 2, result.stderr
    assert "error: --eval-only: MODEL.WEIGHTS is empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()  # refused before any set-up


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--eval-only", "MODEL.WEIGHTS", "{tmp}/nope.pth"], "MODEL.WEIGHTS file not found: "),
        (["VOS.QUEUE_SIZ", "10"], "error: Non-existent config key: VOS.QUEUE_SIZ"),
        (["VOS.QUEUE_SIZE", "1"], "error: VOS.QUEUE_SIZE=1 must be >= 2"),
        (["DATASETS.TEST", "('no_such_set',)"], "error: DATASETS.TEST names ['no_such_set']"),
    ],
)
def test_command_line_mistakes_are_one_clear_line(
    arguments, message, tiny_datasets, tmp_path, capsys
):
    """Config and dataset mistakes used to print a traceback (datasets: after training)."""
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    with pytest.raises(SystemExit) as exit_info:
        load_tool("train_net").parse_checked_args(
            ["--config-file", str(_config_file(tmp_path)), *arguments]
        )
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "output").exists()


def test_eval_only_resume_takes_the_last_checkpoint_for_weights(tmp_path):
    train_net = load_tool("train_net")
    cfg = tiny_cfg("vos_tiny_train", "vos_tiny_test", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS is empty"):
        train_net.eval_only_weights(cfg, resume=True)
    (tmp_path / "last_checkpoint").write_text("model_0000005.pth")
    last = train_net.eval_only_weights(cfg, resume=True)
    assert last == str(tmp_path / "model_0000005.pth")
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS is empty"):
        train_net.eval_only_weights(cfg, resume=False)
    cfg.MODEL.WEIGHTS = str(tmp_path / "given.pth")
    (tmp_path / "given.pth").write_bytes(b"")
    assert train_net.eval_only_weights(cfg, resume=False) == cfg.MODEL.WEIGHTS


@pytest.mark.slow
def test_eval_only_shows_the_ood_results_on_the_terminal_and_in_log_txt(
    trained_vos_run, tiny_datasets, tmp_path_factory
):
    """vos_det's logger used to have no handler: its OOD table reached neither."""
    trained, _ = trained_vos_run
    output = tmp_path_factory.mktemp("eval_only")
    cfg = trained.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(output)
    cfg.MODEL.WEIGHTS = os.path.join(trained.OUTPUT_DIR, "model_final.pth")
    config = output / "eval.yaml"
    config.write_text(cfg.dump())
    script = _RUN_WITH_TINY_DATASETS.format(
        tests=str(Path(__file__).parent),
        id_name=tiny_datasets[1],
        root=str(tmp_path_factory.mktemp("datasets")),
        train_net=str(TRAIN_NET),
        arguments=["--config-file", str(config), "--eval-only"],
    )
    result = _run([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    log = (output / "log.txt").read_text()
    for text in (result.stdout, log):
        assert f"OOD evaluation ({tiny_datasets[1]} vs {TINY_OOD}):" in text
        assert "FPR95" in text and "AUROC" in text
        assert "OOD plots to" in text
    assert log.count("Contents of args.config_file") == 1  # Detectron2's, coloured by pygments
    assert "\x1b" not in log, "ANSI escape codes in log.txt"
