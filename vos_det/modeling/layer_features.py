"""ROI-pooled features of named backbone layers, and their class queues, for the
``layer_mahalanobis`` scores (:mod:`vos_det.core.layer_statistics`).

Each detection (and, in training, each ground-truth box) is pooled at every layer of
``VOS.LAYER_FEATURES.IN_FEATURES`` by ROIAlign into one vector per layer: the layer's features
averaged over the box, as the mean of a 7 x 7 grid of bins of 2 x 2 bilinear samples each
(Detectron2's box-pooler resolution; a fixed number of samples, so a large box on a fine level
costs no more than a small one). The layers are the backbone's outputs: the FPN levels
``p2``-``p6`` of Detectron2's FPN backbones, and the ResNet stages ``res2``-``res5`` as well with
``MODEL.BACKBONE.NAME: build_resnet_fpn_stages_backbone`` (:class:`FPNWithStages`).
"""

from typing import Dict, List, Mapping, Sequence

import torch
from detectron2.layers import ROIAlign, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import Tensor, nn

from ..core.layer_statistics import LayerFeatureQueues
from .distributed import push_rows

__all__ = ["FPNWithStages", "LayerFeatures", "build_resnet_fpn_stages_backbone"]

# Bins per side of the ROIAlign grid a box is averaged over.
_RESOLUTION = 7


class FPNWithStages(FPN):
    """Detectron2's :class:`FPN` whose outputs (and ``output_shape``) also hold the bottom-up
    network's outputs (e.g. ``res2``-``res5``), so that ROI heads can pool them. The pyramid
    itself, its weights and their names are unchanged; it takes the arguments of :class:`FPN`."""

    def output_shape(self) -> Dict[str, ShapeSpec]:
        shapes = super().output_shape()
        shapes.update(self.bottom_up.output_shape())
        return shapes

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """The FPN levels of :meth:`FPN.forward` and the bottom-up outputs of the same pass.

        Args:
            x (Tensor): (N, C, H, W) input images.

        Returns:
            dict[str, Tensor]: level or stage name -> (N, C_l, H_l, W_l) feature map.
        """
        stages: Dict[str, Tensor] = {}
        hook = self.bottom_up.register_forward_hook(lambda _m, _i, out: stages.update(out))
        try:
            outputs = super().forward(x)
        finally:
            hook.remove()
        outputs.update(stages)
        return outputs


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_stages_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Detectron2's ResNet-FPN backbone (``build_resnet_fpn_backbone``: ``MODEL.RESNETS``,
    ``MODEL.FPN``; the same weights load) as an :class:`FPNWithStages`: its outputs also hold
    the ResNet stages of ``MODEL.FPN.IN_FEATURES`` for ``VOS.LAYER_FEATURES``."""
    return FPNWithStages(
        bottom_up=build_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


class LayerFeatures(nn.Module):
    """Pools named feature maps over boxes and keeps their class queues.

    Attributes:
        in_features (tuple[str]): the pooled layers, in order.
        queues (LayerFeatureQueues): per layer, K class queues of the pooled (C_l,) vectors.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str],
        num_classes: int,
        queue_size: int,
        **queue_options,
    ):
        """
        Args:
            input_shape (Mapping[str, ShapeSpec]): the backbone's outputs (channels, stride).
            in_features (Sequence[str]): the layers to pool, among ``input_shape``.
            num_classes (int): K.
            queue_size (int): vectors kept per class and layer.
            queue_options: keyword arguments of :class:`ClassFeatureQueues`.

        Raises:
            ValueError: no layer, or one the backbone does not output (the message lists those
                it does, and how to get the ResNet stages).
        """
        super().__init__()
        missing = [name for name in in_features if name not in input_shape]
        if not in_features or missing:
            raise ValueError(
                f"VOS.LAYER_FEATURES.IN_FEATURES={list(in_features)!r}: "
                + (f"the backbone has no output {missing}" if missing else "no layer named")
                + f"; it outputs {sorted(input_shape)}. For the ResNet stages (res2-res5) use "
                "MODEL.BACKBONE.NAME 'build_resnet_fpn_stages_backbone'."
            )
        self.in_features = tuple(in_features)
        self._aligners = {
            name: ROIAlign(
                (_RESOLUTION, _RESOLUTION), 1.0 / input_shape[name].stride, 2, aligned=True
            )
            for name in self.in_features
        }
        dims = {name: input_shape[name].channels for name in self.in_features}
        self.queues = LayerFeatureQueues(num_classes, queue_size, dims, **queue_options)

    @torch.no_grad()
    def forward(self, features: Mapping[str, Tensor], boxes: List[Tensor]) -> Dict[str, Tensor]:
        """Average every layer's features over each box.

        Args:
            features (Mapping[str, Tensor]): layer name -> (N, C_l, H_l, W_l) maps of N images.
            boxes (list[Tensor]): N tensors of (R_i, 4) XYXY boxes in input-image pixels.

        Returns:
            dict[str, Tensor]: layer name -> (sum R_i, C_l) float32, boxes in order.
        """
        regions = torch.cat(
            [
                torch.cat([b.new_full((len(b), 1), float(i)), b.float()], dim=1)
                for i, b in enumerate(boxes)
            ]
        )
        return {
            name: self._aligners[name](features[name].float(), regions.to(features[name].device))
            .mean(dim=(2, 3))
            .detach()
            for name in self.in_features
        }

    def push(
        self, features: Mapping[str, Tensor], boxes: List[Tensor], labels: Tensor, sync: bool
    ) -> None:
        """Queue the pooled features of (R_i, 4) boxes per image with their (sum R_i,) classes;
        with ``sync`` every worker's rows go in (:func:`push_rows`)."""
        pooled = self(features, boxes)
        for name, queues in self.queues.layers.items():
            push_rows(queues, pooled[name], labels.to(pooled[name].device), sync)
