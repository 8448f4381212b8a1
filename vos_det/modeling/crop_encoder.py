"""Box-crop features: each box resampled from the input image and embedded by a frozen,
pretrained copy of the backbone.

ROI features pool the detector's feature maps. When objects cover few cells of the deep maps
(the embedded benchmark's 18-48 px shapes are 1-3 cells of a stride-16 map), those features mix
in the surroundings and lose the object's shape. A crop feature instead resamples the box to the
size the backbone was pretrained on (``VOS.CROP_FEATURES.SIZE``) and runs the whole pretrained
network on it alone, like a classifier looking at a cut-out (R-CNN's warped regions): on the
benchmark this is what tells unseen shapes from known ones (README, "What the benchmark
measures").

The encoder is a ResNet built from ``MODEL.RESNETS`` (Detectron2's ``build_resnet_backbone``),
frozen and always in eval mode. It is built with the backbone ResNet of the pretrained weights
(``VOS.CROP_FEATURES.WEIGHTS``, by default ``MODEL.WEIGHTS``), so it keeps the pretrained
backbone even when the detector's own backbone is fine-tuned; a trained VOS checkpoint carries
the encoder it was trained and evaluated with, which replaces those weights when it is loaded.
"""

import copy
import logging

import torch
from detectron2.config import CfgNode
from detectron2.layers import ROIAlign, ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import Tensor, nn

from ..utils.weights import RecordingCheckpointer

__all__ = ["CropEncoder", "crop_feature_dim", "square_crop_boxes"]

logger = logging.getLogger(__name__)


def crop_feature_dim(cfg: CfgNode) -> int:
    """C of the box-crop features: the channels of a ResNet's res5 (8 x RES2_OUT_CHANNELS)."""
    return 8 * cfg.MODEL.RESNETS.RES2_OUT_CHANNELS


def square_crop_boxes(boxes: Tensor, margin: float) -> Tensor:
    """The square region a box's crop covers: centred on the box, side ``max(w, h) * (1 + 2 *
    margin)``.

    Args:
        boxes (Tensor): (R, 4) XYXY boxes in pixels.
        margin (float): context added on each side, relative to the box's longer side.

    Returns:
        Tensor: (R, 4) XYXY squares (they may extend beyond the image).
    """
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) * (0.5 + margin)
    return torch.cat([centers - half, centers + half], dim=1)


class CropEncoder(nn.Module):
    """Frozen ResNet embedding of box crops: (R, C) globally pooled last-stage features."""

    def __init__(self, cfg: CfgNode, size: int, margin: float, weights: str = ""):
        """
        Args:
            cfg (CfgNode): the detector's config (``MODEL.RESNETS`` and ``MODEL.PIXEL_MEAN``
                define the encoder, a ResNet like the detector's backbone).
            size (int): side of the resampled crops in pixels.
            margin (float): see :func:`square_crop_boxes`.
            weights (str): a checkpoint (path or URL Detectron2 resolves) whose backbone ResNet
                (``backbone.bottom_up.*``, or a classification ResNet Detectron2 converts) the
                encoder loads; "" leaves it randomly initialised.

        Raises:
            ValueError: naming the first encoder parameter the weights lack.
        """
        super().__init__()
        encoder_cfg = copy.deepcopy(cfg)
        encoder_cfg.defrost()
        encoder_cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
        encoder_cfg.MODEL.BACKBONE.FREEZE_AT = 0  # frozen below, wholly
        self.backbone = build_resnet_backbone(
            encoder_cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
        )
        self.backbone.requires_grad_(False)
        self.size = size
        self.margin = margin
        self.out_channels = self.backbone.output_shape()["res5"].channels
        # Bilinear samples around each output pixel's centre (aligned), as many per pixel as
        # the box is larger than the crop (sampling_ratio 0), averaged: no aliasing.
        self._resample = ROIAlign((size, size), 1.0, sampling_ratio=0, aligned=True)
        if weights:
            self._load_backbone(weights)
        self.train(False)

    def _load_backbone(self, weights: str) -> None:
        """Load the backbone ResNet of a checkpoint, as Detectron2 loads ``MODEL.WEIGHTS``."""
        holder = nn.Module()
        holder.backbone = nn.Module()
        holder.backbone.bottom_up = self.backbone
        checkpointer = RecordingCheckpointer(holder)  # the rest of the checkpoint is no concern
        checkpointer.load(weights, checkpointables=[])
        incompatible = checkpointer.incompatible
        lacking = list(incompatible.missing_keys) + [k for k, *_ in incompatible.incorrect_shapes]
        if lacking:
            raise ValueError(
                f"The crop encoder cannot take its ResNet from {weights}: it lacks {lacking[0]} "
                f"(and {len(lacking) - 1} more). Point VOS.CROP_FEATURES.WEIGHTS at pretrained "
                "weights of a ResNet like MODEL.RESNETS."
            )
        logger.info("Crop encoder: the backbone ResNet of %s.", weights)

    def train(self, mode: bool = True) -> "CropEncoder":
        """Always in eval mode: the encoder is frozen (no batch statistics move either)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor, boxes_per_image: "list[Tensor]") -> Tensor:
        """Embed the crops of the boxes of a batch of images.

        Args:
            images (Tensor): (N, C, H, W) the normalised input images (``ImageList.tensor``).
            boxes_per_image (list[Tensor]): N tensors of (R_i, 4) XYXY boxes in those images'
                pixels.

        Returns:
            Tensor: (sum R_i, out_channels) float32 crop features, boxes in order.
        """
        boxes = torch.cat(boxes_per_image).to(images.device, torch.float32)
        if boxes.shape[0] == 0:
            return images.new_zeros((0, self.out_channels))
        indices = torch.cat(
            [torch.full((len(b), 1), i, dtype=torch.float32) for i, b in enumerate(boxes_per_image)]
        ).to(images.device)
        regions = torch.cat([indices, square_crop_boxes(boxes, self.margin)], dim=1)
        crops = self._resample(images.float(), regions)
        return self.backbone(crops)["res5"].mean(dim=(2, 3))
