"""A Detectron2 ``DatasetEvaluator`` that collects every detection's ID-ness scores.

The collector keeps, per detected box, what the OOD protocol (:mod:`vos_det.evaluation.protocol`)
needs, computed from one inference pass: the image, the box, the predicted class, its class
probability, the largest class probability of its proposal and the ID-ness scores the model
attached (``<name>_scores`` fields, see :mod:`vos_det.core.scores`; higher = more in-distribution).
"""

import logging
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Instances
from detectron2.utils import comm

from ..core.scores import score_field

__all__ = ["BoxScores", "OODScoreCollector", "empty_box_scores"]

logger = logging.getLogger(__name__)

#: Per-box arrays of one dataset, all with the same length N:
#: "image_id" (N,) int or str, "box" (N, 4) float32 XYXY in input-image pixels,
#: "pred_class" (N,) int64, "class_prob" (N,) float32 probability of the predicted class,
#: "max_class_prob" (N,) float32 largest foreground probability of the box's proposal
#: (>= "class_prob"), and one (N,) float32 array per collected score, under the score's name.
BoxScores = Dict[str, np.ndarray]

#: The ``Instances`` field holding each detection's "max_class_prob" (set by VOSOutputLayers).
MAX_CLASS_PROB_FIELD = "max_class_probs"


def empty_box_scores(score_names: Sequence[str]) -> BoxScores:
    """Returns: :data:`BoxScores` with no box (the arrays have length 0)."""
    arrays = {
        "image_id": np.zeros((0,), dtype=np.int64),
        "box": np.zeros((0, 4), dtype=np.float32),
        "pred_class": np.zeros((0,), dtype=np.int64),
        "class_prob": np.zeros((0,), dtype=np.float32),
        "max_class_prob": np.zeros((0,), dtype=np.float32),
    }
    arrays.update({name: np.zeros((0,), dtype=np.float32) for name in score_names})
    return arrays


class OODScoreCollector(DatasetEvaluator):
    """Collect per-box class probabilities and ID-ness scores of a model built with VOSROIHeads.

    The model must attach every collected score as ``<name>_scores`` and the proposals' largest
    class probabilities as ``max_class_probs``: a VOSROIHeads model built from the same config
    does so for ``VOS.SCORE`` and every ``VOS.EVAL.SCORES``.

    ``evaluate`` gathers the boxes of every worker (``comm.gather``) and returns, on the main
    process only, ``{RESULT_KEY: BoxScores}`` (the boxes in dataset order); other processes get
    ``{}``. It can be combined with other evaluators through ``DatasetEvaluators``.
    """

    #: Key of the per-box arrays in the dict ``evaluate`` returns.
    RESULT_KEY = "box_scores"

    def __init__(self, dataset_name: str, score_names: Sequence[str], distributed: bool = True):
        """
        Args:
            dataset_name (str): name of the evaluated dataset, for messages.
            score_names (Sequence[str]): the registered scores to collect.
            distributed (bool): gather the boxes of every worker in ``evaluate``; False = keep
                this process's boxes only.
        """
        self.dataset_name = dataset_name
        self.score_names = tuple(score_names)
        self._distributed = distributed
        self._images: List[BoxScores] = []

    def reset(self) -> None:
        self._images = []

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Store the detections of a batch on the CPU.

        Args:
            inputs (list[dict]): model inputs, each with "image_id".
            outputs (list[dict]): model outputs, each with "instances" carrying ``pred_boxes``,
                ``scores``, ``pred_classes``, ``max_class_probs`` and ``<name>_scores`` (R,) of
                every collected score.

        Raises:
            ValueError: if the outputs lack one of these fields.
        """
        fields = [MAX_CLASS_PROB_FIELD] + [score_field(name) for name in self.score_names]
        for inputs_i, output in zip(inputs, outputs):
            instances = output.get("instances")
            missing = [field for field in fields if instances is None or not instances.has(field)]
            if missing:
                raise ValueError(
                    f"Outputs on {self.dataset_name} have no {', '.join(missing)}: the OOD "
                    "evaluation needs a model built with MODEL.ROI_HEADS.NAME 'VOSROIHeads' (and "
                    "`import vos_det` before building it) from a config whose VOS.SCORE and "
                    "VOS.EVAL.SCORES name these scores."
                )
            self._images.append(
                _instances_to_arrays(instances.to("cpu"), inputs_i["image_id"], self.score_names)
            )

    def evaluate(self) -> Dict[str, BoxScores]:
        """Returns: ``{RESULT_KEY: BoxScores}`` on the main process, ``{}`` on the others."""
        images = self._images
        if self._distributed:
            comm.synchronize()
            images = [image for worker in comm.gather(images, dst=0) for image in worker]
            if not comm.is_main_process():
                return {}
        if not images:
            logger.warning("OODScoreCollector received no image of %s.", self.dataset_name)
            return {self.RESULT_KEY: empty_box_scores(self.score_names)}
        arrays = {key: np.concatenate([image[key] for image in images]) for key in images[0]}
        logger.info(
            "Collected the scores of %d boxes on %s.", len(arrays["box"]), self.dataset_name
        )
        return {self.RESULT_KEY: arrays}


@torch.no_grad()
def _instances_to_arrays(
    instances: Instances, image_id: Union[int, str], score_names: Sequence[str]
) -> BoxScores:
    """Convert one image's detections to :data:`BoxScores`.

    Args:
        instances (Instances): R detections on the CPU with the score fields.
        image_id (int or str): the image's id.
        score_names (Sequence[str]): the scores to keep.

    Returns:
        BoxScores: the R boxes.
    """
    arrays = {
        "image_id": np.repeat(np.asarray([image_id]), len(instances)),
        "box": instances.pred_boxes.tensor.float().numpy(),
        "pred_class": instances.pred_classes.long().numpy(),
        "class_prob": instances.scores.float().numpy(),
        "max_class_prob": instances.get(MAX_CLASS_PROB_FIELD).float().numpy(),
    }
    for name in score_names:
        arrays[name] = instances.get(score_field(name)).float().numpy()
    return arrays
