"""``VOSROIHeads``: Detectron2's standard ROI heads with the VOS box predictor."""

import logging
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances

from ..core.scores import scores_requiring
from .crop_encoder import CropEncoder
from .output_layers import VOSOutputLayers

__all__ = ["VOSROIHeads"]

logger = logging.getLogger(__name__)

_ENCODER = "crop_encoder."


@ROI_HEADS_REGISTRY.register()
class VOSROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` whose box predictor is :class:`VOSOutputLayers`.

    Select it with ``MODEL.ROI_HEADS.NAME: "VOSROIHeads"`` after ``add_vos_config(cfg)``.
    The box features also reach the predictor's ``losses`` (to fill the queues) and
    ``inference`` (for scores that read them). When a configured score reads box-crop features
    (``VOS.CROP_FEATURES``), the heads also hold a frozen :class:`CropEncoder`: in training it
    queues the crop features of the ground-truth boxes, at inference it embeds the detections.
    """

    #: What :func:`~vos_det.modeling.config_checks.validate_vos_config` looks for: these heads
    #: (and heads derived from them) keep the feature queues the feature scores read.
    has_vos_predictor = True

    @configurable
    def __init__(self, *, crop_encoder: Optional[CropEncoder] = None, **kwargs):
        """
        Args:
            crop_encoder (CropEncoder or None): embeds box crops for the crop scores.
            kwargs: arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
        self.crop_encoder = crop_encoder

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        scores = (cfg.VOS.SCORE, *cfg.VOS.EVAL.SCORES)
        if scores_requiring("crop_features", scores):
            crops = cfg.VOS.CROP_FEATURES
            weights = crops.WEIGHTS or cfg.MODEL.WEIGHTS
            ret["crop_encoder"] = CropEncoder(cfg, crops.SIZE, crops.MARGIN, weights)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = VOSOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """:meth:`StandardROIHeads.forward`, keeping the images for the crop encoder.

        Mirrors Detectron2's method line for line (tests/test_upstream_contracts.py fails when
        upstream's changes), except that the images are not dropped: in training the crop
        features of the ground-truth boxes are queued, and ``_forward_box`` receives the images.
        """
        if self.training:
            assert targets, "'targets' argument is required during training"
            self._queue_crop_features(images, targets)
            proposals = self.label_and_sample_proposals(proposals, targets)
        del targets

        if self.training:
            losses = self._forward_box(features, proposals, images)
            # As in StandardROIHeads: the mask and keypoint heads use the box head's proposals.
            losses.update(self._forward_mask(features, proposals))
            losses.update(self._forward_keypoint(features, proposals))
            return proposals, losses
        else:
            pred_instances = self._forward_box(features, proposals, images)
            pred_instances = self.forward_with_given_boxes(features, pred_instances)
            return pred_instances, {}

    def _forward_box(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        images: Optional[ImageList] = None,
    ):
        """:meth:`StandardROIHeads._forward_box`, handing the box features to the predictor.

        Mirrors Detectron2's method line for line (tests/test_upstream_contracts.py fails when
        upstream's changes), except that ``losses`` and ``inference`` also receive the (R, D)
        box features (training fills the queues with them, inference computes feature scores)
        and ``inference`` the crop encoder on ``images``.
        """
        box_features = self.box_pooler(
            [features[f] for f in self.box_in_features], [x.proposal_boxes for x in proposals]
        )
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        if not self.training:
            pred_instances, _ = self.box_predictor.inference(
                predictions, proposals, box_features, self._crop_features_of(images)
            )
            return pred_instances
        losses = self.box_predictor.losses(predictions, proposals, box_features)
        if self.train_on_pred_boxes:
            # As in StandardROIHeads: proposals are modified in place, after the losses.
            with torch.no_grad():
                pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals)
                for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                    proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
        return losses

    def _queue_crop_features(self, images: ImageList, targets: List[Instances]) -> None:
        """Queue the crop features of the ground-truth boxes of a training batch."""
        if self.crop_encoder is None:
            return
        features = self.crop_encoder(images.tensor, [t.gt_boxes.tensor for t in targets])
        self.box_predictor.push_crop_features(features, cat([t.gt_classes for t in targets]))

    def _crop_features_of(self, images: Optional[ImageList]):
        """``(i, boxes) -> (R_i, C)`` crop features of image ``i``'s boxes, or None."""
        if self.crop_encoder is None or images is None:
            return None
        return lambda index, boxes: self.crop_encoder(images.tensor[index : index + 1], [boxes])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint without a crop encoder (pretrained weights, a model trained without crop
        scores) leaves the encoder with the pretrained ResNet it was built with."""
        if self.crop_encoder is not None and not any(
            key.startswith(prefix + _ENCODER) for key in state_dict
        ):
            logger.info(
                "The checkpoint has no crop encoder: it keeps the pretrained backbone it was "
                "built with (VOS.CROP_FEATURES.WEIGHTS, or MODEL.WEIGHTS)."
            )
            for key, value in self.crop_encoder.state_dict().items():
                state_dict[prefix + _ENCODER + key] = value
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
