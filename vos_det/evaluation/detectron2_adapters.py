"""Adapters between Detectron2's catalogs and results and the OOD protocol's arrays.

The rest of :mod:`vos_det.evaluation` works on plain arrays; this module alone reads
Detectron2's ``MetadataCatalog`` and dataset dicts and writes Detectron2's results format.
"""

import json
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

from .protocol import ProtocolResult

__all__ = [
    "ground_truth_arrays",
    "is_ood_dataset",
    "ood_object_arrays",
    "split_id_and_ood",
    "to_detectron2_results",
]


def is_ood_dataset(name: str) -> bool:
    """Whether a registered dataset is an OOD set: its metadata ``evaluator_type`` is "ood"."""
    return MetadataCatalog.get(name).get("evaluator_type") == "ood"


def split_id_and_ood(dataset_names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split test sets into ID sets and OOD sets (:func:`is_ood_dataset`).

    Every set whose ``evaluator_type`` is not "ood" (e.g. one registered by Detectron2 itself)
    counts as ID.

    Args:
        dataset_names (Sequence[str]): registered dataset names, e.g. ``cfg.DATASETS.TEST``.

    Returns:
        tuple[list[str], list[str]]: the ID sets and the OOD sets, each in the given order.

    Raises:
        ValueError: if there are OOD sets but not exactly one ID set to compare them with.
    """
    id_names, ood_names = [], []
    for name in dataset_names:
        (ood_names if is_ood_dataset(name) else id_names).append(name)
    if ood_names and len(id_names) != 1:
        raise ValueError(
            f"The OOD evaluation compares the OOD sets {ood_names} with exactly one ID set, but "
            f"DATASETS.TEST holds {len(id_names)} ID set(s) {id_names}. Put one ID set (e.g. "
            "voc_2007_test) in DATASETS.TEST with the OOD sets."
        )
    return id_names, ood_names


def ground_truth_arrays(dataset_dicts: Iterable[dict]) -> Dict[str, np.ndarray]:
    """Collect the ground-truth boxes of Detectron2 dataset dicts (crowd boxes left out).

    Args:
        dataset_dicts (Iterable[dict]): records with "image_id" and "annotations" (each with
            "bbox", "bbox_mode", "category_id").

    Returns:
        dict[str, np.ndarray]: "image_id" (G,), "box" (G, 4) float64 XYXY absolute pixels,
        "class" (G,) int64 contiguous class ids.
    """
    image_ids, boxes, classes = [], [], []
    for record in dataset_dicts:
        for annotation in record.get("annotations", []):
            if annotation.get("iscrowd", 0):
                continue
            image_ids.append(record["image_id"])
            boxes.append(
                BoxMode.convert(annotation["bbox"], annotation["bbox_mode"], BoxMode.XYXY_ABS)
            )
            classes.append(annotation["category_id"])
    return {
        "image_id": np.asarray(image_ids),
        "box": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "class": np.asarray(classes, dtype=np.int64),
    }


def ood_object_arrays(name: str) -> Optional[Tuple[Dict[str, np.ndarray], List[str]]]:
    """The annotated objects of an OOD set registered with a COCO-format file, if it has any.

    OOD sets are evaluated without their annotations; diagnostics use them to tell which
    unseen objects pass as ID (the synthetic benchmark and COCO record them).

    Args:
        name (str): a registered OOD set.

    Returns:
        tuple or None: ("image_id" (G,), "box" (G, 4) float64 XYXY, "class" (G,) int64 indices
        into the names; the category names in id order), or None when the set has no
        ``json_file`` or it lists no annotations.
    """
    json_file = MetadataCatalog.get(name).get("json_file")
    if not json_file:
        return None
    with open(json_file, encoding="utf-8") as f:
        content = json.load(f)
    annotations = [a for a in content.get("annotations", []) if not a.get("iscrowd", 0)]
    if not annotations:
        return None
    categories = sorted(content.get("categories", []), key=lambda c: c["id"])
    index = {category["id"]: i for i, category in enumerate(categories)}
    boxes = np.asarray([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    arrays = {
        "image_id": np.asarray([a["image_id"] for a in annotations]),
        "box": boxes,
        "class": np.asarray([index[a["category_id"]] for a in annotations], dtype=np.int64),
    }
    return arrays, [category["name"] for category in categories]


def to_detectron2_results(result: ProtocolResult) -> Dict[str, Dict[str, Dict[str, float]]]:
    """The OOD results in Detectron2's form ``{dataset: {task: {metric: float}}}``.

    The ID set gets the task "ood_protocol" (threshold, boxes, kept boxes); every OOD set gets
    one task per score ({"FPR95", "AUROC", "AUPR"}) and "ood_protocol" (boxes, kept boxes).

    Args:
        result (ProtocolResult): a run's OOD results.

    Returns:
        dict: nested dicts of floats, accepted by ``print_csv_format`` and ``EvalHook``.
    """
    results = {
        result.id_dataset: {
            "ood_protocol": {
                "threshold": result.threshold.value,
                "boxes": float(result.id_boxes),
                "kept_boxes": float(result.id_kept),
            }
        }
    }
    for name, ood in result.ood.items():
        results[name] = {score: dict(metrics) for score, metrics in ood.metrics.items()}
        results[name]["ood_protocol"] = {"boxes": float(ood.boxes), "kept_boxes": float(ood.kept)}
    return results
