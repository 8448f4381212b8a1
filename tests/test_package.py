"""The package layer: imports, registration, and detectron2 training on the CPU."""

import subprocess
import sys

import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from tiny_detection import tiny_cfg


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


def test_stock_detectron2_trains_a_tiny_gn_faster_rcnn_on_cpu(tiny_datasets, tmp_path):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path))
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    model = build_model(cfg)
    model.train()
    from detectron2.data import build_detection_train_loader

    batch = next(iter(build_detection_train_loader(cfg)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with EventStorage(0):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert torch.isfinite(total)
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)
