"""RegNetX + FPN backbone for YAML configs (Detectron2 builds RegNet only from LazyConfigs)."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, Backbone, RegNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.regnet import ResBottleneckBlock, SimpleStem

__all__ = ["build_regnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_regnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """A RegNetX (``MODEL.REGNETS.*``, default 4.0GF) under an FPN (``MODEL.FPN.*``).

    Pretrained pycls checkpoints (``*.pyth``) load through ``DetectionCheckpointer``.
    """
    regnets = cfg.MODEL.REGNETS
    bottom_up = RegNet(
        stem_class=SimpleStem,
        stem_width=regnets.STEM_WIDTH,
        block_class=ResBottleneckBlock,
        depth=regnets.DEPTH,
        w_a=regnets.W_A,
        w_0=regnets.W_0,
        w_m=regnets.W_M,
        group_width=regnets.GROUP_WIDTH,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        norm=regnets.NORM,
        out_features=regnets.OUT_FEATURES,
    )
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
