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
    The box features also reach the predictor's ``losses`` (to fill the queues) and
    ``inference`` (for scores that read them).
    """

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = VOSOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """:meth:`StandardROIHeads._forward_box`, handing the box features to the predictor.

        Mirrors Detectron2's method line for line (tests/test_upstream_contracts.py fails when
        upstream's changes), except that ``losses`` and ``inference`` also receive the (R, D)
        box features: training fills the queues with them, inference computes feature scores.
        """
        box_features = self.box_pooler(
            [features[f] for f in self.box_in_features], [x.proposal_boxes for x in proposals]
        )
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        if not self.training:
            pred_instances, _ = self.box_predictor.inference(predictions, proposals, box_features)
            return pred_instances
        losses = self.box_predictor.losses(predictions, proposals, box_features)
        if self.train_on_pred_boxes:
            # As in StandardROIHeads: proposals are modified in place, after the losses.
            with torch.no_grad():
                pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals)
                for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                    proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
        return losses
