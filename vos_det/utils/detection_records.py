"""Detections of inference on images: running the predictor, ``detections.json`` records with
strict JSON numbers, non-finite ID scores, and the OOD threshold evaluation derived
(``tools/demo.py``)."""

import logging
import math
import os
from typing import Any, List, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.structures import Instances

from ..core.scores import score_field
from ..evaluation import EvaluationFolder
from .image_files import SkippedImage

__all__ = [
    "DETECTIONS_FILE",
    "class_names_of",
    "derived_ood_threshold",
    "detect",
    "detections_record",
    "flag_non_finite_scores",
]

logger = logging.getLogger(__name__)

DETECTIONS_FILE = "detections.json"


def derived_ood_threshold(results: str, score: str) -> float:
    """The ID-ness threshold evaluation derived for ``score`` (``id_score_thresholds``).

    Args:
        results (str): an ``ood_results.json`` file or the folder holding it.
        score (str): the score the detections are flagged by (``VOS.SCORE``).

    Raises:
        FileNotFoundError: if there is no results file there.
        ValueError: if the file is not OOD results or has no threshold for ``score``.
    """
    folder = os.path.dirname(results) if os.path.isfile(results) else results
    result = EvaluationFolder(folder).read_results()
    if score not in result.id_score_thresholds:
        raise ValueError(
            f"{EvaluationFolder(folder).results_file} has no OOD threshold for the {score} score "
            f"(VOS.SCORE); it has thresholds for {sorted(result.id_score_thresholds)}: set "
            "VOS.SCORE to one of them, or evaluate with that score in VOS.EVAL.SCORES."
        )
    threshold = result.id_score_thresholds[score]
    logger.info("OOD threshold of the %s score from %s: %.6g", score, folder, threshold)
    return threshold


def detect(predictor: DefaultPredictor, image: np.ndarray) -> Instances:
    """Run the detector on one image.

    Args:
        predictor (DefaultPredictor): the detector.
        image (ndarray): (H, W, 3) uint8 BGR image.

    Returns:
        Instances: the detections on the CPU.

    Raises:
        SkippedImage: the detector cannot take the image, e.g. one of 1 x 3000 pixels, whose
            short side the test-time resize rounds down to 0.
    """
    try:
        return predictor(image)["instances"].to("cpu")
    except (ValueError, RuntimeError) as error:
        height, width = image.shape[:2]
        raise SkippedImage(
            f"the detector cannot take this image of {height} x {width} pixels (height x width): "
            f"{error}"
        ) from error


def class_names_of(cfg: CfgNode) -> List[str]:
    """The ID class names from the metadata of the config's datasets, else ``class <i>``.

    Args:
        cfg (CfgNode): the config.

    Returns:
        list[str]: ``MODEL.ROI_HEADS.NUM_CLASSES`` names.
    """
    for dataset in tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST):
        names = MetadataCatalog.get(dataset).get("thing_classes")
        if names is not None and len(names) == cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            return list(names)
    return [f"class {i}" for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)]


def detections_record(
    file_name: str,
    height: int,
    width: int,
    instances: Instances,
    class_names: Sequence[str],
    extra_scores: Sequence[str] = (),
) -> dict:
    """One image's entry of ``detections.json``.

    Args:
        file_name (str): the input image path.
        height (int): image height in pixels.
        width (int): image width in pixels.
        instances (Instances): the detections on the CPU.
        class_names (Sequence[str]): names indexed by ``pred_classes``.
        extra_scores (Sequence[str]): more scores to record, from their ``<name>_scores``
            fields, each as ``<name>_score``.

    Returns:
        dict: ``file_name``, ``height``, ``width`` and ``detections``, each with ``box``
        (x0, y0, x1, y1 in input pixels), ``class``, ``class_id``, ``score``, ``id_score``,
        ``is_ood`` (None when no OOD threshold is set) and the extra scores. Non-finite numbers
        are None (JSON ``null``).
    """
    columns = {
        "box": instances.pred_boxes.tensor.tolist(),
        "class_id": instances.pred_classes.tolist(),
        "score": instances.scores.tolist(),
        "id_score": instances.id_scores.tolist(),
        "is_ood": (
            instances.is_ood.tolist() if instances.has("is_ood") else [None] * len(instances)
        ),
    }
    for name in extra_scores:
        columns[f"{name}_score"] = instances.get(score_field(name)).tolist()
    detections = []
    for row in zip(*columns.values()):
        detection = dict(zip(columns, row))
        detection["class"] = class_names[detection["class_id"]]
        detections.append(detection)
    record = {"file_name": file_name, "height": height, "width": width, "detections": detections}
    return _finite_or_none(record)


def _finite_or_none(value: Any) -> Any:
    """``value`` (JSON data) with its non-finite floats replaced by None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def flag_non_finite_scores(path: str, instances: Instances, flagging: bool) -> None:
    """Warn about boxes whose ID score is not finite and, when flagging, flag them OOD: an
    unknown score must never count as in-distribution.

    Args:
        path (str): the image, named in the warning.
        instances (Instances): its detections on the CPU; ``is_ood`` is updated in place.
        flagging (bool): an OOD threshold is set (``instances`` has ``is_ood``).
    """
    non_finite = ~torch.isfinite(instances.id_scores)
    count = int(non_finite.sum())
    if not count:
        return
    if flagging:
        instances.is_ood = instances.is_ood | non_finite
    logger.warning(
        "%s: %d of %d boxes have a non-finite ID score (written as null%s)",
        path,
        count,
        len(instances),
        ", flagged OOD" if flagging else "",
    )
