"""Open-set test sets: scenes holding known (ID) and unknown objects, annotated together.

An open-set set is stored as a COCO-format file whose categories are the ID classes, matched by
name, plus one category named :data:`UNKNOWN_CLASS` for every object of another class. Loaded
as Detectron2 dataset dicts, a known object's ``category_id`` is the index of its class in the
ID class list and an unknown object's is ``len(id_classes)``: the metadata's
``thing_classes`` are the ID classes followed by "unknown", as open-set detectors list them.
Its metadata ``evaluator_type="open_set"`` is what the evaluation dispatches on.
"""

import logging
from typing import Callable, List, Optional, Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .ood_datasets import resolve_id_classes, load_json, require_path

__all__ = [
    "OPEN_SET_EVALUATOR_TYPE",
    "UNKNOWN_CLASS",
    "load_open_set_json",
    "register_open_set_dataset",
]

logger = logging.getLogger(__name__)

#: The category name of every object outside the ID classes.
UNKNOWN_CLASS = "unknown"

#: The metadata ``evaluator_type`` of an open-set set.
OPEN_SET_EVALUATOR_TYPE = "open_set"

_DEFAULT_MISSING_HINT = "Check the paths given to register_open_set_dataset()."


def load_open_set_json(
    json_file: str,
    image_root: str,
    id_classes: Sequence[str],
    missing_hint: str = _DEFAULT_MISSING_HINT,
) -> List[dict]:
    """Load a COCO-format open-set file as Detectron2 dataset dicts.

    Args:
        json_file (str): COCO-format file: ``images`` (``id``, ``file_name``, ``height``,
            ``width``), ``annotations`` (``image_id``, ``bbox`` [x, y, w, h] in pixels,
            ``category_id``, optional ``iscrowd``) and ``categories`` named after ID classes or
            :data:`UNKNOWN_CLASS`.
        image_root (str): folder the ``file_name`` entries are relative to.
        id_classes (Sequence[str]): the ID classes, in the detector's class order.
        missing_hint (str): sentence telling the user how to create missing files.

    Returns:
        list[dict]: one dict per image, in file order, with ``file_name``, ``image_id``,
        ``height``, ``width`` and ``annotations`` (``bbox`` XYWH_ABS, ``bbox_mode``,
        ``category_id``: the ID class index, or ``len(id_classes)`` for an unknown object,
        ``iscrowd``).

    Raises:
        FileNotFoundError: if the file or the image folder is missing.
        ValueError: naming the problem, if a category is neither an ID class nor "unknown", an
            annotation names an undeclared category or image, or an image entry lacks a field.
    """
    content = load_json(json_file, missing_hint)
    require_path(image_root, "folder", missing_hint)
    if not isinstance(content, dict) or not all(
        isinstance(content.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise ValueError(
            f"{json_file} is not a COCO-format open-set file: it needs the lists 'images', "
            "'annotations' and 'categories'."
        )
    class_index = {name: index for index, name in enumerate(id_classes)}
    class_index[UNKNOWN_CLASS] = len(id_classes)
    contiguous = {}
    for category in content["categories"]:
        if category.get("name") not in class_index:
            raise ValueError(
                f"{json_file}: category {category.get('name')!r} is neither an ID class "
                f"{list(id_classes)} nor {UNKNOWN_CLASS!r}; an open-set file names every object "
                f"outside the ID classes {UNKNOWN_CLASS!r}."
            )
        contiguous[category["id"]] = class_index[category["name"]]
    records = {}
    for image in content["images"]:
        missing = [key for key in ("id", "file_name", "height", "width") if key not in image]
        if missing:
            raise ValueError(f"{json_file}: image entry {image!r} has no {missing}.")
        records[image["id"]] = {
            "file_name": f"{image_root}/{image['file_name']}",
            "image_id": image["id"],
            "height": int(image["height"]),
            "width": int(image["width"]),
            "annotations": [],
        }
    for annotation in content["annotations"]:
        if annotation.get("category_id") not in contiguous:
            raise ValueError(
                f"{json_file}: annotation {annotation.get('id')} has category_id "
                f"{annotation.get('category_id')!r}, which 'categories' does not declare."
            )
        if annotation.get("image_id") not in records:
            raise ValueError(
                f"{json_file}: annotation {annotation.get('id')} refers to image "
                f"{annotation.get('image_id')!r}, which 'images' does not list."
            )
        records[annotation["image_id"]]["annotations"].append(
            {
                "bbox": [float(value) for value in annotation["bbox"]],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": contiguous[annotation["category_id"]],
                "iscrowd": int(annotation.get("iscrowd", 0)),
            }
        )
    return list(records.values())


def register_open_set_dataset(
    name: str,
    image_root: str,
    json_file: str,
    id_classes: Union[str, Sequence[str]],
    missing_hint: str = _DEFAULT_MISSING_HINT,
    loader: Optional[Callable[[], List[dict]]] = None,
) -> None:
    """Register an open-set test set with Detectron2 (the files are read when it is loaded).

    Args:
        name (str): dataset name.
        image_root (str): folder of the images.
        json_file (str): its COCO-format file (:func:`load_open_set_json`).
        id_classes (str or Sequence[str]): the ID classes, a key of ``ID_CLASSES`` ("voc",
            "bdd") or the class names in the detector's order.
        missing_hint (str): sentence appended to missing-file errors, saying how to create them.
        loader (Callable[[], list[dict]] or None): loads the dataset dicts instead of
            :func:`load_open_set_json`, e.g. to generate the files first.
    """
    id_dataset, class_names = resolve_id_classes(id_classes)
    if loader is None:

        def loader(json_file=json_file, root=image_root, classes=tuple(class_names)):
            return load_open_set_json(json_file, root, classes, missing_hint)

    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        id_dataset=id_dataset,
        id_classes=list(class_names),
        thing_classes=list(class_names) + [UNKNOWN_CLASS],
        evaluator_type=OPEN_SET_EVALUATOR_TYPE,
    )
    logger.debug("Registered open-set dataset %s (ID classes: %s).", name, id_dataset)
