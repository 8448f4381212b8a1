"""Detectron2 modeling components of VOS; importing this module registers them."""

from .output_layers import VOSOutputLayers
from .regnet_fpn import build_regnet_fpn_backbone
from .roi_heads import VOSROIHeads

__all__ = ["VOSOutputLayers", "VOSROIHeads", "build_regnet_fpn_backbone"]
