"""Writing the synthetic benchmark's files: each split's images, its COCO file, the manifest.

:mod:`vos_det.data.synthetic` decides when a folder is (re)generated and documents its layout;
this module draws and writes it. What each split holds:

* ``train``, ``id_test``: ID shapes only, each annotated with its own category (ids 1-3).
* ``ood_test``: OOD shapes only, each annotated with its own category (ids 4-7).
* ``mixed_test``: ID and OOD shapes, each object known or unknown with probability 1/2; a known
  one keeps its category (ids 1-3), an unknown one is annotated "unknown"
  (:data:`UNKNOWN_CATEGORY_ID` = 8, so that no id means two things across the benchmark's
  files). Its ``"shape"`` drawing record still names the true shape.

An image depends only on the seed, its split's index in :data:`SYNTHETIC_SPLITS` and its own
index, so adding a split (at the end) leaves the images of the others unchanged.
"""

import os
from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

import cv2
import numpy as np

from ..core.cached_folder import write_manifest
from ..core.files import write_json
from ..core.shape_scenes import (
    SYNTHETIC_ID_CLASSES,
    SYNTHETIC_OOD_CLASSES,
    ShapeDrawing,
    render_scene,
)
from .open_set_datasets import UNKNOWN_CLASS

__all__ = ["SYNTHETIC_SPLITS", "UNKNOWN_CATEGORY_ID", "write_benchmark"]

#: Category id of the shapes of each class, in every split that names them.
_CATEGORY_IDS = {
    name: index + 1 for index, name in enumerate(SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES)
}
#: Category id of "unknown" in the mixed split: after every class's own id.
UNKNOWN_CATEGORY_ID = len(_CATEGORY_IDS) + 1

_Category = Tuple[int, str]  # (COCO category id, category name)


class _SplitContent(NamedTuple):
    """What a split's images show and how its COCO file names them.

    Attributes:
        labels (tuple[str, ...]): each object's shape is drawn uniformly from these; a shape
            listed k times is k times as likely.
        categories (dict[str, tuple[int, str]]): shape -> (category id, category name).
    """

    labels: Tuple[str, ...]
    categories: Dict[str, _Category]


def _own_categories(classes: Sequence[str]) -> Dict[str, _Category]:
    """Each shape of ``classes`` annotated as its own class."""
    return {name: (_CATEGORY_IDS[name], name) for name in classes}


_SPLIT_CONTENT = {
    "train": _SplitContent(SYNTHETIC_ID_CLASSES, _own_categories(SYNTHETIC_ID_CLASSES)),
    "id_test": _SplitContent(SYNTHETIC_ID_CLASSES, _own_categories(SYNTHETIC_ID_CLASSES)),
    "ood_test": _SplitContent(SYNTHETIC_OOD_CLASSES, _own_categories(SYNTHETIC_OOD_CLASSES)),
    "mixed_test": _SplitContent(
        # ID and OOD classes with equal total weight (4 x 3 = 3 x 4 labels): P(unknown) = 1/2
        SYNTHETIC_ID_CLASSES * len(SYNTHETIC_OOD_CLASSES)
        + SYNTHETIC_OOD_CLASSES * len(SYNTHETIC_ID_CLASSES),
        {
            **_own_categories(SYNTHETIC_ID_CLASSES),
            **dict.fromkeys(SYNTHETIC_OOD_CLASSES, (UNKNOWN_CATEGORY_ID, UNKNOWN_CLASS)),
        },
    ),
}

#: The splits, in the order of their index in each image's random seed (append new ones only).
SYNTHETIC_SPLITS = tuple(_SPLIT_CONTENT)


def write_benchmark(
    folder: str, split_sizes: Mapping[str, int], image_size: int, seed: int, header: dict
) -> None:
    """Write every split, its COCO file and the manifest into a new ``folder``.

    Args:
        folder (str): output folder (created, its parent must exist).
        split_sizes (Mapping[str, int]): number of images per split of ``SYNTHETIC_SPLITS``.
        image_size (int): side of the square images in pixels.
        seed (int): random seed of the benchmark.
        header (dict): manifest entries besides the files; its ``"generator_version"`` is also
            recorded in each COCO file's ``info``.
    """
    written: List[str] = []
    for split, num_images in split_sizes.items():
        written += _write_split(
            folder, split, num_images, image_size, seed, header["generator_version"]
        )
    write_manifest(folder, header, written)


def _write_split(
    folder: str, split: str, num_images: int, image_size: int, seed: int, version: int
) -> List[str]:
    """Draw and write one split's images and its COCO file ``annotations/<split>.json``.

    Args:
        folder (str): benchmark folder being written.
        split (str): one of ``SYNTHETIC_SPLITS``.
        num_images (int): number of images.
        image_size (int): side of the square images in pixels.
        seed (int): random seed of the benchmark.
        version (int): generator version, recorded in the file's ``info``.

    Returns:
        list[str]: the files written, relative to ``folder`` with "/" separators.
    """
    os.makedirs(os.path.join(folder, split))
    categories = _SPLIT_CONTENT[split].categories
    written, images, annotations = [], [], []
    for image_index in range(num_images):
        pixels, objects = _render_image(seed, split, image_index, image_size)
        image_id = image_index + 1
        file_name = f"{image_id:06d}.png"
        _write_png(os.path.join(folder, split, file_name), pixels)
        written.append(f"{split}/{file_name}")
        images.append(
            {"id": image_id, "file_name": file_name, "height": image_size, "width": image_size}
        )
        for drawing, mask, visible_mask in objects:
            category_id = categories[drawing.shape][0]
            annotation_id = len(annotations) + 1
            annotations.append(
                _annotation(annotation_id, image_id, category_id, drawing, mask, visible_mask)
            )
    relative = f"annotations/{split}.json"
    coco = _coco_file(split, images, annotations, version)
    write_json(coco, os.path.join(folder, relative), compact=True)
    return written + [relative]


def _render_image(
    seed: int, split: str, image_index: int, image_size: int
) -> Tuple[np.ndarray, List[Tuple[ShapeDrawing, np.ndarray, np.ndarray]]]:
    """Draw one image of a split (:func:`~vos_det.core.shape_scenes.render_scene`); it depends
    only on ``seed``, the split's index in ``SYNTHETIC_SPLITS`` and ``image_index`` (0-based)."""
    split_index = SYNTHETIC_SPLITS.index(split)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, image_index)))
    return render_scene(rng, _SPLIT_CONTENT[split].labels, image_size)


def _coco_file(split: str, images: List[dict], annotations: List[dict], version: int) -> dict:
    """The COCO content of a split: its images, annotations and categories (ordered by id)."""
    categories = sorted(set(_SPLIT_CONTENT[split].categories.values()))
    return {
        "info": {
            "description": f"vos_det synthetic benchmark, {split} split",
            "version": str(version),
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": category_id, "name": name, "supercategory": "shape"}
            for category_id, name in categories
        ],
    }


def _annotation(
    annotation_id: int,
    image_id: int,
    category_id: int,
    drawing: ShapeDrawing,
    mask: np.ndarray,
    visible_mask: np.ndarray,
) -> dict:
    """COCO annotation of one shape; its box is the tight extent of the full shape's pixels.

    Args:
        annotation_id (int): unique id within the file.
        image_id (int): id of the image.
        category_id (int): its category in the split's file.
        drawing (ShapeDrawing): the shape.
        mask (np.ndarray): (H, W) bool mask of the full shape.
        visible_mask (np.ndarray): (H, W) bool mask of its pixels not hidden by later shapes.

    Returns:
        dict: annotation with ``bbox`` [x, y, w, h] in pixels, ``area`` = visible pixel count,
        ``visible_fraction`` of the shape's pixels and the ``shape`` drawing record.
    """
    rows, columns = np.nonzero(mask)
    x0, y0 = int(columns.min()), int(rows.min())
    width, height = int(columns.max()) - x0 + 1, int(rows.max()) - y0 + 1
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(x0), float(y0), float(width), float(height)],
        "area": int(visible_mask.sum()),
        "iscrowd": 0,
        "visible_fraction": round(float(visible_mask.sum() / mask.sum()), 4),
        "shape": drawing.to_json(),
    }


def _write_png(path: str, pixels: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG."""
    if not cv2.imwrite(path, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write image {path}.")
