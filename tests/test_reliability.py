"""What a new user hit: each case reproduced, with the clear behaviour asserted."""

import logging
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

import vos_det
from tiny_detection import tiny_cfg
from tool_scripts import load_tool
from vos_det.data import register_ood_dataset
from vos_det.engine import VOSTrainer
from vos_det.engine.checkpoint import AtomicCheckpointer
from vos_det.evaluation import EvaluationFolder, ProtocolResult
from vos_det.evaluation.box_matching import ScoreThreshold
from vos_det.core.scores import ScoreInputs
from vos_det.modeling.detection_scores import attach_scores


def _predictor(cfg):
    return build_model(cfg).roi_heads.box_predictor


# ---------------------------------------------------------------- a class that never fills


@pytest.mark.slow
@pytest.mark.parametrize(
    "min_fill, expected", [(0, [False, False, False]), (2, [True, True, False])]
)
def test_classes_holding_the_loss_back_are_named(
    tiny_datasets, tmp_path, caplog, min_fill, expected
):
    predictor = _predictor(tiny_cfg(*tiny_datasets, str(tmp_path), MIN_QUEUE_FILL=min_fill))
    features = torch.randn(16, predictor.queues.dim)
    predictor.queues.push(features, torch.tensor([0] * 8 + [1] * 8))  # "blue" (2) gets nothing
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        for iteration in (10, 11, 109, 110):
            with EventStorage(iteration):
                ready = predictor.outlier_classes(predictor.queues, iteration)
    assert ready.tolist() == expected
    assert [r.getMessage()[:13] for r in caplog.records] == ["Iteration 10,", "Iteration 110"]
    message = "feature queues of blue (0/{}) are not filled".format(min_fill or 8)
    assert message in caplog.text
    assert "A class without training boxes never fills its queue" in caplog.text
    if min_fill == 0:
        assert "the uncertainty loss stays off until every queue is full" in caplog.text


# ---------------------------------------------------------------- checks before training


@pytest.mark.slow
def test_class_count_mismatch_is_named_before_training(tiny_datasets, tmp_path):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 20
    with pytest.raises(ValueError, match="vos_tiny_train has 3 classes but .*NUM_CLASSES is 20"):
        VOSTrainer(cfg)


@pytest.mark.slow
def test_ood_only_or_two_id_test_sets_fail_before_training(tiny_datasets, tmp_path):
    register_ood_dataset("reliability_ood", str(tmp_path), id_classes=["red", "green", "blue"])
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path))
    cfg.DATASETS.TEST = ("reliability_ood",)
    with pytest.raises(ValueError, match="holds 0 ID set"):
        VOSTrainer(cfg)
    cfg.DATASETS.TEST = (tiny_datasets[1], tiny_datasets[0], "reliability_ood")
    with pytest.raises(ValueError, match="holds 2 ID set"):
        VOSTrainer(cfg)


@pytest.mark.slow
def test_missing_or_unregistered_test_sets_fail_before_training(tiny_datasets, tmp_path):
    missing = tmp_path / "no_such_folder"
    register_ood_dataset("reliability_missing", str(missing), id_classes=["red", "green", "blue"])
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path))
    cfg.DATASETS.TEST = (tiny_datasets[1], "reliability_missing")
    with pytest.raises(FileNotFoundError, match=str(missing)):
        VOSTrainer(cfg)
    cfg.DATASETS.TEST = (tiny_datasets[1], "no_such_dataset")
    with pytest.raises(KeyError, match="no_such_dataset.*not registered"):
        VOSTrainer(cfg)


def test_missing_voc_names_the_datasets_root_variable(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    with pytest.raises(FileNotFoundError, match="DETECTRON2_DATASETS is not set.*README"):
        DatasetCatalog.get("voc_2007_test")


# ---------------------------------------------------------------- queue size changes


@pytest.mark.slow
def test_queues_of_another_size_are_refused_naming_both(tiny_datasets, tmp_path):
    model = build_model(tiny_cfg(*tiny_datasets, str(tmp_path)))
    queues = model.roi_heads.box_predictor.queues
    queues.push(torch.randn(5, queues.dim), torch.tensor([0, 0, 1, 2, 2]))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("queues8")
    resized = build_model(tiny_cfg(*tiny_datasets, str(tmp_path), QUEUE_SIZE=16))
    with pytest.raises(ValueError, match="3 classes, 8 vectors per class.*16 vectors per class"):
        DetectionCheckpointer(resized).load(str(tmp_path / "queues8.pth"))
    same = build_model(tiny_cfg(*tiny_datasets, str(tmp_path)))
    DetectionCheckpointer(same).load(str(tmp_path / "queues8.pth"))
    assert same.roi_heads.box_predictor.queues.fill_counts().tolist() == [2, 1, 2]


@pytest.mark.slow
def test_queues_saved_before_the_shape_buffer_still_load(tiny_datasets, tmp_path):
    queues = build_model(tiny_cfg(*tiny_datasets, str(tmp_path))).roi_heads.box_predictor.queues
    queues.push(torch.randn(3, queues.dim), torch.tensor([0, 1, 2]))
    state = {k: v for k, v in queues.state_dict().items() if k != "queue_shape"}
    fresh = type(queues)(3, 8, queues.dim)
    assert fresh.load_state_dict(state, strict=True).missing_keys == []
    assert torch.equal(fresh.features, queues.features)


# ---------------------------------------------------------------- scores and thresholds


@pytest.mark.slow
def test_a_nan_score_is_never_taken_for_a_known_object(tiny_datasets, tmp_path):
    predictor = _predictor(tiny_cfg(*tiny_datasets, str(tmp_path)))
    predictor.ood_threshold = 0.5
    logits = torch.tensor([[5.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]])
    result = Instances((8, 8))
    inputs = ScoreInputs(logits, uncertainty=predictor.uncertainty)
    attach_scores(result, inputs, predictor.score_names, predictor.score_name, predictor.ood_threshold)
    assert result.is_ood.tolist() == [False, True]


@pytest.mark.slow
def test_negative_thresholds_flag_unbounded_scores(tiny_datasets, tmp_path):
    """Energy and the feature scores are often negative: "negative = no flag" hid them all."""
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), SCORE="energy", OOD_THRESHOLD=-0.5)
    vos_det.validate_vos_config(cfg)
    predictor = _predictor(cfg)
    logits = torch.tensor([[5.0, 0.0, 0.0], [-5.0, -5.0, -5.0]])  # energy scores 5.01, -3.90
    result = Instances((8, 8))
    inputs = ScoreInputs(logits, uncertainty=predictor.uncertainty)
    attach_scores(result, inputs, predictor.score_names, predictor.score_name, predictor.ood_threshold)
    assert result.is_ood.tolist() == [False, True]
    no_flag = _predictor(tiny_cfg(*tiny_datasets, str(tmp_path), SCORE="energy"))
    unflagged = Instances((8, 8))
    inputs = ScoreInputs(logits, uncertainty=no_flag.uncertainty)
    attach_scores(unflagged, inputs, no_flag.score_names, no_flag.score_name, no_flag.ood_threshold)
    assert not unflagged.has("is_ood")  # None: no flag at all, whatever the scores
    torch.testing.assert_close(unflagged.id_scores, torch.logsumexp(logits, dim=1))


def test_ood_threshold_outside_the_scores_range_is_refused():
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.VOS.OOD_THRESHOLD = 7.0
    with pytest.raises(ValueError, match=r"VOS.OOD_THRESHOLD=7.0 is outside the range \[0, 1\]"):
        vos_det.validate_vos_config(cfg)
    cfg.VOS.OOD_THRESHOLD = -1.0  # "no flag" before None took that job: now refused for vos
    with pytest.raises(ValueError, match=r"VOS.OOD_THRESHOLD=-1.0 is outside the range \[0, 1\]"):
        vos_det.validate_vos_config(cfg)
    cfg.VOS.SCORE = "energy"  # unbounded: any threshold can flag something
    vos_det.validate_vos_config(cfg)
    cfg.VOS.OOD_THRESHOLD = "low"
    with pytest.raises(ValueError, match="VOS.OOD_THRESHOLD='low' must be a number, or None"):
        vos_det.validate_vos_config(cfg)


# ---------------------------------------------------------------- files


def test_backbone_weights_load_with_one_line_and_other_gaps_are_warned(
    tiny_datasets, pretrained_weights, tmp_path, caplog
):
    model = build_model(tiny_cfg(*tiny_datasets, str(tmp_path)))
    with caplog.at_level(logging.INFO, logger="fvcore"):
        AtomicCheckpointer(model).load(pretrained_weights, checkpointables=[])
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("fvcore")]
    assert not [m for level, m in messages if level >= logging.WARNING], messages
    others = sum(1 for key in model.state_dict() if not key.startswith("backbone.bottom_up."))
    assert any(
        "hold the backbone's ResNet only (backbone.bottom_up.*)" in m and f"model's {others} other" in m
        for _, m in messages
    ), messages
    # A backbone that lacks a stage is a real gap: Detectron2's warning, with the key.
    state = torch.load(pretrained_weights, map_location="cpu", weights_only=False)
    state["model"] = {k: v for k, v in state["model"].items() if ".res5." not in k}
    torch.save(state, tmp_path / "partial.pth")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fvcore"):
        AtomicCheckpointer(model).load(str(tmp_path / "partial.pth"), checkpointables=[])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("backbone.bottom_up.res5" in m for m in warnings), warnings


@pytest.mark.slow
def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tiny_datasets, tmp_path):
    model = build_model(tiny_cfg(*tiny_datasets, str(tmp_path)))
    checkpointer = AtomicCheckpointer(model, save_dir=str(tmp_path))
    checkpointer.save("model_final")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    checkpointer.save("model_final")  # a second save replaces the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]
    saved = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved["model"].items())
    before = (tmp_path / "model_final.pth").read_bytes()

    def disk_full(data, f, *args, **kwargs):
        f.write(b"truncated")
        raise OSError(28, "No space left on device")

    original = torch.save
    torch.save = disk_full
    try:
        with pytest.raises(OSError, match="No space left"):
            checkpointer.save("model_final")
    finally:
        torch.save = original
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert checkpointer.get_checkpoint_file().endswith("model_final.pth")


def test_a_corrupt_score_file_is_named(tmp_path):
    folder = EvaluationFolder(str(tmp_path))
    folder.save_box_scores("d", {"class_prob": np.ones(3, dtype=np.float32)})
    np.testing.assert_array_equal(folder.load_box_scores("d")["class_prob"], np.ones(3))
    (tmp_path / "scores_d.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="scores_d.npz is not a readable score file"):
        folder.load_box_scores("d")


@pytest.mark.slow
def test_importing_vos_det_first_prints_no_known_torch_warning():
    code = (
        "import vos_det, detectron2.modeling, torch, torch.fx._symbolic_trace as fx;"
        "torch.meshgrid(torch.ones(2), torch.ones(2)); fx.is_fx_tracing()"
    )
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for notice in ("torch.jit.script", "meshgrid", "is_fx_tracing"):
        assert notice not in result.stderr
    # Positive control: without vos_det the same calls print the notices, so the filters above
    # are what silences them (if torch stops printing one, this names it: drop its filter).
    control = subprocess.run(
        [sys.executable, "-W", "default", "-c", code.replace("import vos_det, ", "import ")],
        capture_output=True,
        text=True,
    )
    assert control.returncode == 0, control.stderr
    for notice in ("torch.jit.script", "meshgrid", "is_fx_tracing"):
        assert notice in control.stderr, notice


def _write_results(folder, id_score_thresholds):
    result = ProtocolResult(
        id_dataset="id",
        threshold=ScoreThreshold(0.5, "fixed"),
        tpr=0.95,
        scores=["vos", "energy"],
        id_boxes=10,
        id_kept=8,
        id_metrics={},
        ood={},
        id_score_thresholds=id_score_thresholds,
    )
    EvaluationFolder(str(folder)).write_results(result)


def test_demo_takes_the_threshold_evaluation_derived(tmp_path):
    demo = load_tool("demo")
    _write_results(tmp_path, {"vos": 0.93, "energy": 2.5})
    assert demo.derived_ood_threshold(str(tmp_path), "vos") == 0.93
    assert demo.derived_ood_threshold(str(tmp_path / "ood_results.json"), "energy") == 2.5
    with pytest.raises(ValueError, match="no OOD threshold for the msp score.*'energy', 'vos'"):
        demo.derived_ood_threshold(str(tmp_path), "msp")
    with pytest.raises(FileNotFoundError, match="ood_results.json not found"):
        demo.derived_ood_threshold(str(tmp_path / "elsewhere"), "vos")


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--ood-threshold", "7"], r"VOS.OOD_THRESHOLD=7.0 is outside the range \[0, 1\]"),
        (["--ood-threshold", "0.5", "--ood-threshold-from", "x"], "not allowed with argument"),
    ],
)
def test_demo_refuses_thresholds_that_cannot_work(tmp_path, capsys, flags, message):
    config = tmp_path / "config.yaml"
    config.write_text(tiny_cfg("vos_tiny_train", "vos_tiny_test", str(tmp_path)).dump())
    arguments = ["--config-file", str(config), "--input", "x.png", "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        load_tool("demo").main(arguments + flags)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
