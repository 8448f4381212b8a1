"""``VOSROIHeads``: Detectron2's standard ROI heads with the VOS box predictor."""

import logging
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances

from ..core.scores import scores_requiring
from .crop_encoder import CropEncoder
from .layer_features import LayerFeatures
from .output_layers import VOSOutputLayers, queue_options

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
    Likewise, for the layer scores (``VOS.LAYER_FEATURES``), :class:`LayerFeatures` pools the
    backbone layers over the ground-truth boxes (queued) and over the detections (scored).
    """

    #: What :func:`~vos_det.modeling.config_checks.validate_vos_config` looks for: these heads
    #: (and heads derived from them) keep the feature queues the feature scores read.
    has_vos_predictor = True

    @configurable
    def __init__(
        self,
        *,
        crop_encoder: Optional[CropEncoder] = None,
        layer_features: Optional[LayerFeatures] = None,
        **kwargs,
    ):
        """
        Args:
            crop_encoder (CropEncoder or None): embeds box crops for the crop scores.
            layer_features (LayerFeatures or None): pools and queues backbone layers for the
                layer scores.
            kwargs: arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
        self.crop_encoder = crop_encoder
        self.layer_features = layer_features

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        scores = (cfg.VOS.SCORE, *cfg.VOS.EVAL.SCORES)
        if scores_requiring("crop_features", scores):
            crops = cfg.VOS.CROP_FEATURES
            weights = crops.WEIGHTS or cfg.MODEL.WEIGHTS
            ret["crop_encoder"] = CropEncoder(cfg, crops.SIZE, crops.MARGIN, weights)
        if scores_requiring("layer_features", scores):
            layers = cfg.VOS.LAYER_FEATURES
            ret["layer_features"] = LayerFeatures(
                input_shape,
                layers.IN_FEATURES,
                cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                layers.QUEUE_SIZE,
                **queue_options(cfg),
            )
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
        upstream's changes), except that the images are not dropped: in training the crop and
        layer features of the ground-truth boxes are queued, and ``_forward_box`` receives the
        images.
        """
        if self.training:
            assert targets, "'targets' argument is required during training"
            self._queue_ground_truth(images, features, targets)
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
        and ``inference`` the crop and layer features of the detections.
        """
        box_features = self.box_pooler(
            [features[f] for f in self.box_in_features], [x.proposal_boxes for x in proposals]
        )
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        if not self.training:
            pred_instances, _ = self.box_predictor.inference(
                predictions, proposals, box_features, self._detection_inputs(images, features)
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

    def _queue_ground_truth(
        self, images: ImageList, features: Dict[str, torch.Tensor], targets: List[Instances]
    ) -> None:
        """Queue the crop and layer features of the ground-truth boxes of a training batch."""
        boxes = [t.gt_boxes.tensor for t in targets]
        labels = cat([t.gt_classes for t in targets])
        if self.crop_encoder is not None:
            self.box_predictor.push_crop_features(self.crop_encoder(images.tensor, boxes), labels)
        if self.layer_features is not None:
            self.layer_features.push(features, boxes, labels, self.box_predictor.sync_queues)

    def _detection_inputs(
        self, images: Optional[ImageList], features: Dict[str, torch.Tensor]
    ) -> Callable[[int, torch.Tensor], Dict[str, object]]:
        """``(i, boxes) -> {ScoreInputs field: value}``: the crop features and the layer
        features (with their queues) of image ``i``'s (R_i, 4) boxes, as far as the heads hold
        their encoders."""

        def inputs(index: int, boxes: torch.Tensor) -> Dict[str, object]:
            found: Dict[str, object] = {}
            if self.crop_encoder is not None and images is not None:
                found["crop_features"] = self.crop_encoder(
                    images.tensor[index : index + 1], [boxes]
                )
            if self.layer_features is not None:
                layers = self.layer_features.in_features
                maps = {name: features[name][index : index + 1] for name in layers}
                found["layer_features"] = self.layer_features(maps, [boxes])
                found["layer_queues"] = self.layer_features.queues
            return found

        return inputs

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
