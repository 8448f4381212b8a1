"""``VOSROIHeads``: Detectron2's standard ROI heads with the VOS box predictor."""

from typing import Dict, List

import torch
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, Instances

from .output_layers import VOSOutputLayers

__all__ = ["VOSROIHeads"]


@ROI_HEADS_REGISTRY.register()
class VOSROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` whose box predictor is :class:`VOSOutputLayers`.

    Select it with ``MODEL.ROI_HEADS.NAME: "VOSROIHeads"`` after ``add_vos_config(cfg)``.
    Inference is Detectron2's own; training also hands the box features to the predictor's
    ``losses`` so it can fill its queues.
    """

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = VOSOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        if not self.training:
            return super()._forward_box(features, proposals)
        box_features = self.box_pooler(
            [features[f] for f in self.box_in_features], [x.proposal_boxes for x in proposals]
        )
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        losses = self.box_predictor.losses(predictions, proposals, box_features)
        if self.train_on_pred_boxes:
            # As in StandardROIHeads: proposals are modified in place, after the losses.
            with torch.no_grad():
                pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals)
                for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                    proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
        return losses
