"""The package layer: imports, registration, and a plugin that leaves Detectron2's detector as
it is (VOS only adds a loss term and inference fields)."""

import copy
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage


@pytest.mark.slow
def test_import_registers_once_and_reimport_is_harmless():
    code = (
        "import importlib, vos_det, vos_det.modeling\n"
        "from detectron2.modeling import ROI_HEADS_REGISTRY, BACKBONE_REGISTRY\n"
        "importlib.reload(vos_det)\n"
        "import vos_det.modeling.roi_heads\n"
        "assert ROI_HEADS_REGISTRY.get('VOSROIHeads') is vos_det.VOSROIHeads\n"
        "assert BACKBONE_REGISTRY.get('build_regnet_fpn_backbone') is not None\n"
        "names = [n for n, _ in ROI_HEADS_REGISTRY]\n"
        "assert names.count('VOSROIHeads') == 1, names\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _losses(model, batch, iteration: int) -> dict:
    """The loss dict of one training forward pass at ``iteration``, with fixed random draws."""
    model.train()
    torch.manual_seed(0)  # the RPN and ROI heads sample anchors and proposals at random
    with EventStorage(start_iter=iteration):
        return {name: value.detach() for name, value in model(batch).items()}


@pytest.mark.slow
def test_vos_heads_give_the_standard_detectors_losses_and_detections(trained_vos_run):
    """VOSROIHeads and StandardROIHeads built from one config, at the same weights and batch:
    the same Detectron2 losses, before VOS.START_ITER and with the uncertainty loss active,
    and the same detections."""
    cfg, trainer = trained_vos_run
    vos = copy.deepcopy(trainer.model)  # training forward passes push into the queues
    standard_cfg = cfg.clone()
    standard_cfg.defrost()
    standard_cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    standard = build_model(standard_cfg)
    missing, unexpected = standard.load_state_dict(vos.state_dict(), strict=False)
    assert missing == []
    prefixes = ("roi_heads.box_predictor.uncertainty.", "roi_heads.box_predictor.queues.")
    assert unexpected and all(key.startswith(prefixes) for key in unexpected), unexpected
    batch = next(iter(trainer.build_train_loader(cfg)))
    for iteration in (0, cfg.VOS.START_ITER):
        vos_losses, standard_losses = _losses(vos, batch, iteration), _losses(standard, batch, 0)
        assert set(vos_losses) == set(standard_losses) | {"loss_uncertainty"}
        for name, value in standard_losses.items():
            torch.testing.assert_close(vos_losses[name], value, msg=name)
        assert bool(vos_losses["loss_uncertainty"] > 0) == (iteration >= cfg.VOS.START_ITER)
    detections = []
    for model in (vos, standard):
        model.eval()
        with torch.no_grad():
            detections.append(model(batch)[0]["instances"])
    vos_detections, standard_detections = detections
    assert len(standard_detections) > 0
    torch.testing.assert_close(
        vos_detections.pred_boxes.tensor, standard_detections.pred_boxes.tensor
    )
    torch.testing.assert_close(vos_detections.scores, standard_detections.scores)
    torch.testing.assert_close(vos_detections.pred_classes, standard_detections.pred_classes)
