"""VOSROIHeads as a Detectron2 plugin: training, inference, checkpoints, config validation."""

import copy
import logging

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import vos_det
from tiny_detection import tiny_cfg
from vos_det.engine import VOSTrainer
from vos_det.core.scores import ScoreInputs, compute_scores


def _history(trainer, key):
    return {it: value for value, it in trainer.storage.history(key).values()}


@pytest.mark.slow
def test_uncertainty_loss_zero_before_start_iter_and_positive_after(trained_vos_run):
    cfg, trainer = trained_vos_run
    losses = _history(trainer, "loss_uncertainty")
    active = _history(trainer, "vos/active")
    assert sorted(losses) == list(range(cfg.SOLVER.MAX_ITER))
    for it, value in losses.items():
        if it < cfg.VOS.START_ITER:
            assert value == 0.0 and active[it] == 0.0
        else:
            assert value > 0.0 and active[it] == 1.0
    for key in ("total_loss", "loss_cls", "loss_box_reg", "loss_uncertainty"):
        assert all(np.isfinite(v) for v in _history(trainer, key).values())
    assert _history(trainer, "vos/queue_fill_min")[cfg.SOLVER.MAX_ITER - 1] >= 2 / 8


@pytest.mark.slow
def test_gradients_reach_energy_weights_logistic_layer_and_classifier(trained_vos_run):
    cfg, trainer = trained_vos_run
    model = copy.deepcopy(trainer.model)  # training forward passes push into the queues
    model.train()
    batch = next(iter(trainer.build_train_loader(cfg)))
    with EventStorage(start_iter=cfg.VOS.START_ITER):
        losses = model(batch)
    model.zero_grad()
    losses["loss_uncertainty"].backward()
    predictor = model.roi_heads.box_predictor
    for param in (
        predictor.uncertainty.energy_weights,
        predictor.uncertainty.logistic.weight,
        predictor.cls_score.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert (
        predictor.bbox_pred.weight.grad is None or predictor.bbox_pred.weight.grad.abs().sum() == 0
    )


@pytest.mark.slow
def test_predictor_attaches_consistent_scores(trained_vos_run, tiny_datasets):
    cfg, _ = trained_vos_run
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(trained_vos_run[0].OUTPUT_DIR) + "/model_final.pth"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.VOS.OOD_THRESHOLD = 0.5
    predictor = DefaultPredictor(cfg)
    head = predictor.model.roi_heads.box_predictor.uncertainty
    image = cv2.imread(DatasetCatalog.get(tiny_datasets[1])[0]["file_name"])
    instances = predictor(image)["instances"]
    assert len(instances) > 0
    assert ((instances.id_scores >= 0) & (instances.id_scores <= 1)).all()
    assert instances.fg_logits.shape == (len(instances), 3)
    with torch.no_grad():
        expected = head.id_score(head.energy(instances.fg_logits))
    torch.testing.assert_close(instances.id_scores, expected)
    torch.testing.assert_close(instances.vos_scores, expected)
    assert torch.equal(instances.is_ood, instances.id_scores < 0.5)


@pytest.mark.slow
def test_kept_logits_come_from_the_detections_own_proposals(trained_vos_run, tiny_datasets):
    cfg, trainer = trained_vos_run
    model = copy.deepcopy(trainer.model).eval()
    captured = []
    hook = model.roi_heads.box_predictor.cls_score.register_forward_hook(
        lambda module, inputs, output: captured.append(output.detach())
    )
    record = DatasetCatalog.get(tiny_datasets[1])[0]
    image = torch.as_tensor(cv2.imread(record["file_name"]).transpose(2, 0, 1).copy())
    with torch.no_grad():
        instances = model([{"image": image}])[0]["instances"]
    hook.remove()
    all_logits = captured[0]
    assert len(instances) > 0
    for fg_logits, cls, score, max_prob in zip(
        instances.fg_logits, instances.pred_classes, instances.scores, instances.max_class_probs
    ):
        rows = (all_logits[:, :3] == fg_logits).all(dim=1).nonzero()[:, 0]
        assert len(rows) >= 1
        probs = torch.softmax(all_logits[rows[0]], dim=0)
        torch.testing.assert_close(probs[cls], score)
        torch.testing.assert_close(max_prob, probs[:3].max())  # over the proposal's classes
        assert max_prob >= score


@pytest.mark.slow
@pytest.mark.parametrize("score", ["energy", "msp", "max_logit"])
def test_configured_score_is_attached(trained_vos_run, tiny_datasets, score):
    cfg, _ = trained_vos_run
    cfg = cfg.clone()
    cfg.defrost()
    cfg.VOS.SCORE = score
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.OUTPUT_DIR + "/model_final.pth")
    record = DatasetCatalog.get(tiny_datasets[1])[0]
    image = torch.as_tensor(cv2.imread(record["file_name"]).transpose(2, 0, 1).copy())
    with torch.no_grad():
        instances = model([{"image": image}])[0]["instances"]
    assert len(instances) > 0
    expected = compute_scores([score], ScoreInputs(instances.fg_logits))[score]
    torch.testing.assert_close(instances.id_scores, expected)
    torch.testing.assert_close(instances.get(f"{score}_scores"), expected)


def _queue_state(model):
    return {k: v.clone() for k, v in model.roi_heads.box_predictor.queues.state_dict().items()}


@pytest.mark.slow
def test_checkpoint_round_trip_restores_queues(trained_vos_run):
    cfg, trainer = trained_vos_run
    model = build_model(cfg)
    assert int(model.roi_heads.box_predictor.queues.fill_counts().sum()) == 0
    DetectionCheckpointer(model).load(cfg.OUTPUT_DIR + "/model_final.pth")
    saved = _queue_state(trainer.model)
    loaded = _queue_state(model)
    assert saved.keys() == loaded.keys() and len(saved) >= 3
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key


@pytest.mark.slow
def test_resume_continues_with_full_queues_and_active_loss(trained_vos_run, tmp_path):
    cfg, trainer = trained_vos_run
    (tmp_path / "model_final.pth").write_bytes(
        open(cfg.OUTPUT_DIR + "/model_final.pth", "rb").read()
    )
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    resumed_cfg = cfg.clone()
    resumed_cfg.defrost()
    resumed_cfg.OUTPUT_DIR = str(tmp_path)
    resumed_cfg.DATASETS.TEST = ()  # no evaluation after training
    resumed_cfg.SOLVER.MAX_ITER = cfg.SOLVER.MAX_ITER + 2
    resumed = VOSTrainer(resumed_cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == cfg.SOLVER.MAX_ITER
    queues = resumed.model.roi_heads.box_predictor.queues
    assert bool(queues.ready_classes(cfg.VOS.MIN_QUEUE_FILL).any())
    for key, value in _queue_state(trainer.model).items():
        assert torch.equal(value, _queue_state(resumed.model)[key])
    resumed.train()
    losses = _history(resumed, "loss_uncertainty")
    assert sorted(losses) == [cfg.SOLVER.MAX_ITER, cfg.SOLVER.MAX_ITER + 1]
    assert all(value > 0 for value in losses.values())


@pytest.mark.slow
def test_vanilla_detectron2_checkpoint_loads_into_vos_model(trained_vos_run, tmp_path, caplog):
    cfg, _ = trained_vos_run
    vanilla_cfg = cfg.clone()
    vanilla_cfg.defrost()
    vanilla_cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    vanilla = build_model(vanilla_cfg)
    DetectionCheckpointer(vanilla, save_dir=str(tmp_path)).save("vanilla")
    model = build_model(cfg)
    with caplog.at_level(logging.INFO, logger="vos_det"):
        DetectionCheckpointer(model).load(str(tmp_path / "vanilla.pth"))
    assert any("no VOS state (queues, uncertainty)" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(
        model.roi_heads.box_predictor.cls_score.weight,
        vanilla.roi_heads.box_predictor.cls_score.weight,
    )
    assert int(model.roi_heads.box_predictor.queues.fill_counts().sum()) == 0


@pytest.mark.slow
def test_vanilla_mode_has_no_queues_and_no_uncertainty_loss(tiny_datasets, tmp_path):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), ENABLED=False)
    cfg.SOLVER.MAX_ITER = 2
    trainer = VOSTrainer(cfg)
    trainer.train()
    predictor = trainer.model.roi_heads.box_predictor
    assert predictor.queues is None
    assert not any(p.requires_grad for p in predictor.uncertainty.parameters())
    assert "loss_uncertainty" not in trainer.storage.histories()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("SCORE", "entropy", "VOS.SCORE='entropy' must be one of vos, energy, msp, max_logit"),
        ("QUEUE_SIZE", 1, "VOS.QUEUE_SIZE=1 must be >= 2"),
        ("NUM_CANDIDATES", 0, "VOS.NUM_CANDIDATES=0 must be >= VOS.NUM_SELECT"),
        ("LOSS_WEIGHT", -0.1, "VOS.LOSS_WEIGHT=-0.1 must be >= 0"),
        ("MIN_QUEUE_FILL", 9, r"VOS.MIN_QUEUE_FILL=9 must be in \[0, VOS.QUEUE_SIZE\]"),
    ],
)
def test_invalid_config_values_name_the_key(tiny_datasets, tmp_path, key, value, message):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), **{key: value})
    with pytest.raises(ValueError, match=message):
        build_model(cfg)


def test_missing_vos_section_says_to_call_add_vos_config():
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NAME = "VOSROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    with pytest.raises(ValueError, match="add_vos_config"):
        build_model(cfg)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("START_ITER", -1, "VOS.START_ITER=-1 must be >= 0"),
        ("NUM_SELECT", 0, "VOS.NUM_SELECT=0 must be >= 1"),
        ("COV_EPS", 0.0, "VOS.COV_EPS=0.0 must be > 0"),
        ("STATS_RECOMPUTE_PERIOD", 0, "VOS.STATS_RECOMPUTE_PERIOD=0 must be >= 1"),
        ("EVAL.SCORE_THRESHOLD", 1.5, r"VOS.EVAL.SCORE_THRESHOLD=1.5 must be negative"),
        ("EVAL.TPR", 0.0, r"VOS.EVAL.TPR=0.0 must be in \(0, 1\]"),
        ("EVAL.SCORES", ("vos", "entropy"), "VOS.EVAL.SCORES=.*must list distinct names among"),
        ("EVAL.SCORES", ("vos", "vos"), "VOS.EVAL.SCORES=.*must list distinct names"),
    ],
)
def test_validate_vos_config_names_the_key(key, value, message):
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    vos_det.validate_vos_config(cfg)  # the defaults are valid
    cfg.merge_from_list([f"VOS.{key}", value])
    with pytest.raises(ValueError, match=message):
        vos_det.validate_vos_config(cfg)


def test_shipped_configs_build(tmp_path):
    for name in [
        "VOC-Detection/vanilla_R_50_FPN.yaml",
        "VOC-Detection/vos_R_50_FPN.yaml",
        "VOC-Detection/vos_RegNetX_4GF.yaml",
        "BDD-Detection/vos_R_50_FPN.yaml",
        "BDD-Detection/vanilla_R_50_FPN.yaml",
        "BDD-Detection/vos_RegNetX_4GF.yaml",
    ]:
        cfg = get_cfg()
        vos_det.add_vos_config(cfg)
        cfg.merge_from_file(vos_det.model_zoo.get_config_file(name))
        cfg.MODEL.DEVICE = "cpu"
        vos_det.validate_vos_config(cfg)
        assert cfg.MODEL.ROI_HEADS.NAME == "VOSROIHeads"
        if "RegNet" in name:
            model = build_model(cfg)  # the backbone alone is the part YAML could not build before
            assert type(model.backbone.bottom_up).__name__ == "RegNet"
    with pytest.raises(FileNotFoundError, match="not a config shipped with vos_det"):
        vos_det.model_zoo.get_config_file("VOC-Detection/nope.yaml")
