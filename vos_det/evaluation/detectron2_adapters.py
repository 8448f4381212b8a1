"""Adapters between Detectron2's catalogs and results and the OOD protocol's arrays.

The rest of :mod:`vos_det.evaluation` works on plain arrays; this module alone reads
Detectron2's ``MetadataCatalog`` and dataset dicts and writes Detectron2's results format.
"""

import json
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

from ..data.open_set_datasets import OPEN_SET_EVALUATOR_TYPE
from .protocol import ProtocolResult

__all__ = [
    "ground_truth_arrays",
    "is_ood_dataset",
    "is_open_set_dataset",
    "ood_object_arrays",
    "open_set_ground_truth",
    "split_test_sets",
    "to_detectron2_results",
]


def is_ood_dataset(name: str) -> bool:
    """Whether a registered dataset is an OOD set: its metadata ``evaluator_type`` is "ood"."""
    return MetadataCatalog.get(name).get("evaluator_type") == "ood"


def is_open_set_dataset(name: str) -> bool:
    """Whether a registered dataset is a mixed (open-set) set: its metadata ``evaluator_type``
    is "open_set" (:mod:`vos_det.data.open_set_datasets`)."""
    return MetadataCatalog.get(name).get("evaluator_type") == OPEN_SET_EVALUATOR_TYPE


def split_test_sets(dataset_names: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
    """Split test sets into ID sets, OOD sets (:func:`is_ood_dataset`) and mixed sets
    (:func:`is_open_set_dataset`).

    Every other set (e.g. one registered by Detectron2 itself) counts as ID.

    Args:
        dataset_names (Sequence[str]): registered dataset names, e.g. ``cfg.DATASETS.TEST``.

    Returns:
        tuple[list[str], list[str], list[str]]: the ID, OOD and mixed sets, each in the given
        order.

    Raises:
        ValueError: if there are OOD or mixed sets but not exactly one ID set to compare them
            with (the mixed sets' flags are set on the ID set's boxes).
    """
    id_names, ood_names, open_set_names = [], [], []
    for name in dataset_names:
        if is_ood_dataset(name):
            ood_names.append(name)
        elif is_open_set_dataset(name):
            open_set_names.append(name)
        else:
            id_names.append(name)
    others = ood_names + open_set_names
    if others and len(id_names) != 1:
        raise ValueError(
            f"The OOD evaluation compares the OOD and mixed sets {others} with exactly one ID "
            f"set, but DATASETS.TEST holds {len(id_names)} ID set(s) {id_names}. Put one ID set "
            "(e.g. voc_2007_test) in DATASETS.TEST with them."
        )
    return id_names, ood_names, open_set_names


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


def open_set_ground_truth(name: str, dataset_dicts: Sequence[dict]) -> Dict[str, np.ndarray]:
    """The ground truth of a mixed set, as the open-set evaluation reads it.

    Args:
        name (str): the registered mixed set (its metadata ``id_classes``).
        dataset_dicts (Sequence[dict]): its records (unknown objects at category
            ``len(id_classes)``).

    Returns:
        dict[str, np.ndarray]: :func:`ground_truth_arrays`, plus "images" (I,) every record's
        image id and "num_known" () int64 K.
    """
    arrays = ground_truth_arrays(dataset_dicts)
    arrays["images"] = np.asarray([record["image_id"] for record in dataset_dicts])
    arrays["num_known"] = np.asarray(len(MetadataCatalog.get(name).id_classes), dtype=np.int64)
    return arrays


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
    one task per score ({"FPR95", "AUROC", "AUPR"}) and "ood_protocol" (boxes, kept boxes);
    every mixed set one task "open_set/<score>" per score and "open_set/no flag" (the open-set
    metrics) and "ood_protocol" (boxes, kept boxes, unknown objects).

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
    for name, open_set in result.open_set.items():
        results[name] = {f"open_set/{row}": dict(m) for row, m in open_set.metrics.items()}
        results[name]["ood_protocol"] = {
            "boxes": float(open_set.boxes),
            "kept_boxes": float(open_set.kept),
            "unknown_objects": float(open_set.unknown_objects),
        }
    return results
