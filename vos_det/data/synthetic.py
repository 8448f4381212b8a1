"""The embedded synthetic benchmark: generation, caching and registration with Detectron2.

The images are procedural shape scenes (see :mod:`vos_det.core.shape_scenes`): ID classes circle,
square, triangle (trained and evaluated); OOD classes star, cross, ring, crescent (never in the ID
splits).

Three ID classes keep the benchmark learnable from scratch on a CPU: a GN ResNet-18 FPN reaches
AP50 60-80 in 800 iterations, where five classes (adding ellipse and pentagon) left it at AP50
23-46 after 400-800 iterations (measurements in the README).

:func:`generate_synthetic_benchmark` writes, under a root folder::

    train/000001.png ...        ID objects only
    id_test/000001.png ...      ID objects only
    ood_test/000001.png ...     OOD objects only (no ID object at all)
    annotations/train.json      COCO format: images, annotations (bbox [x, y, w, h]), categories
    annotations/id_test.json    COCO format, like train.json
    annotations/ood_test.json   COCO format: the images, and their OOD objects for reference
    MANIFEST.json               generation parameters and the sha256 of every file

Category ids are 1-3 for the ID classes and 4-7 for the OOD classes. A box is the tight extent
of the full shape in pixels (pixel ``i`` covers ``[i, i + 1)``), also where a later shape hides
part of it; no shape is more than 60% hidden. Each annotation also records the shape's drawing
parameters (``"shape"``, see :class:`~vos_det.core.shape_scenes.ShapeDrawing`), its
``"visible_fraction"`` and, as ``"area"``, its visible pixel count. The output depends only on
the :class:`SyntheticBenchmarkSpec`: the same seed gives the same bytes, and an image depends
only on the seed, its split and its index.

:func:`register_synthetic_benchmark` registers the three splits with Detectron2 without
generating anything; the folder is generated the first time a split is loaded, then reused.
"""

import dataclasses
import functools
import logging
import os
import time
from typing import Dict, List

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json

from ..core.cached_folder import (
    MANIFEST,
    check_integer_fields,
    exclusive_lock,
    is_intact,
    replace_folder,
    write_manifest,
)
from ..core.files import write_json
from .ood_datasets import load_ood_image_list, register_ood_dataset
from ..core.shape_scenes import (
    MIN_IMAGE_SIZE,
    SYNTHETIC_ID_CLASSES,
    SYNTHETIC_OOD_CLASSES,
    ShapeDrawing,
    render_scene,
)

__all__ = [
    "SYNTHETIC_SPLITS",
    "SyntheticBenchmarkSpec",
    "generate_synthetic_benchmark",
    "register_synthetic_benchmark",
]

logger = logging.getLogger(__name__)

SYNTHETIC_SPLITS = ("train", "id_test", "ood_test")

# Bump when the generated content changes: folders written by another version are regenerated.
_GENERATOR_VERSION = 2
_OWNED_ENTRIES = {*SYNTHETIC_SPLITS, "annotations", MANIFEST}
_CATEGORY_IDS = {
    name: index + 1 for index, name in enumerate(SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES)
}
_SPLIT_CLASSES = {
    "train": SYNTHETIC_ID_CLASSES,
    "id_test": SYNTHETIC_ID_CLASSES,
    "ood_test": SYNTHETIC_OOD_CLASSES,
}


@dataclasses.dataclass(frozen=True)
class SyntheticBenchmarkSpec:
    """The generation parameters of the synthetic benchmark; its output depends only on them.

    Attributes:
        num_train (int): images in the train split (>= 1).
        num_id_test (int): images in the ID test split (>= 1).
        num_ood_test (int): images in the OOD test split (>= 1).
        image_size (int): side of the square images in pixels (>= 64); object sizes and clutter
            scale with it (objects are 18-48 px across at 128).
        seed (int): random seed (>= 0).

    Raises:
        ValueError: naming the first field that is not an integer or is below its minimum.
    """

    num_train: int = 400
    num_id_test: int = 500
    num_ood_test: int = 500
    image_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        check_integer_fields(self, {"image_size": MIN_IMAGE_SIZE, "seed": 0})

    def as_dict(self) -> Dict[str, int]:
        """The parameters by name, in field order, as recorded in the manifest."""
        return dataclasses.asdict(self)

    def split_sizes(self) -> Dict[str, int]:
        """Number of images per split, keyed and ordered as ``SYNTHETIC_SPLITS``."""
        return dict(zip(SYNTHETIC_SPLITS, (self.num_train, self.num_id_test, self.num_ood_test)))


def generate_synthetic_benchmark(
    root: str, spec: SyntheticBenchmarkSpec = SyntheticBenchmarkSpec()
) -> Dict[str, str]:
    """Write the synthetic benchmark under ``root``, or reuse it if it is already there.

    A folder whose ``MANIFEST.json`` records the same parameters, and whose files all match the
    checksums listed there, is left untouched. Otherwise the benchmark is generated into a
    temporary sibling folder that then replaces ``root``; a lock on the parent folder keeps
    concurrent processes (e.g. data-parallel workers) from generating it twice.

    Args:
        root (str): output folder. It must be missing, empty or a synthetic benchmark folder (an
            existing folder holding anything else is never overwritten).
        spec (SyntheticBenchmarkSpec): generation parameters (400 / 500 / 500 images of
            128x128 pixels, seed 0 by default).

    Returns:
        dict[str, str]: ``"root"``, ``"manifest"``, and for each split ``s`` of
        ``SYNTHETIC_SPLITS`` the image folder ``f"{s}_images"`` and COCO file ``f"{s}_json"``.

    Raises:
        FileExistsError: if ``root`` holds files that are not a synthetic benchmark.
    """
    root = os.path.abspath(os.path.expanduser(root))
    header = _manifest_header(spec)
    if not is_intact(root, header):
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        with exclusive_lock(parent):
            if not is_intact(root, header):  # another process may have just written it
                _generate_and_replace(root, spec)
    return _benchmark_paths(root)


def register_synthetic_benchmark(
    root: str,
    name_prefix: str = "synthetic",
    spec: SyntheticBenchmarkSpec = SyntheticBenchmarkSpec(),
) -> Dict[str, str]:
    """Register the synthetic benchmark's splits with Detectron2; skip names already registered.

    Nothing is generated here: loading a split (``DatasetCatalog.get``) first calls
    :func:`generate_synthetic_benchmark` with ``spec``, which writes ``root`` if it is missing or
    incomplete and otherwise only checks it.

    * ``{prefix}_train``, ``{prefix}_id_test``: ID sets loaded with Detectron2's
      ``load_coco_json`` (``thing_classes`` = ``SYNTHETIC_ID_CLASSES``, ``evaluator_type="coco"``,
      ``id_dataset="synthetic"``).
    * ``{prefix}_ood_test``: OOD image list registered by :func:`register_ood_dataset`
      (``evaluator_type="ood"``, ``id_classes`` = ``SYNTHETIC_ID_CLASSES``).

    Args:
        root (str): benchmark folder, normally ``$DETECTRON2_DATASETS/synthetic``.
        name_prefix (str): prefix of the dataset names.
        spec (SyntheticBenchmarkSpec): generation parameters.

    Returns:
        dict[str, str]: split ("train", "id_test", "ood_test") -> registered dataset name.
    """
    paths = _benchmark_paths(root)
    names = {split: f"{name_prefix}_{split}" for split in SYNTHETIC_SPLITS}
    for split, name in names.items():
        if name in DatasetCatalog:
            continue
        image_root, json_file = paths[f"{split}_images"], paths[f"{split}_json"]
        loader = functools.partial(_load_split, name, split, paths["root"], spec)
        if split == "ood_test":
            register_ood_dataset(
                name, image_root, json_file, id_classes=list(SYNTHETIC_ID_CLASSES), loader=loader
            )
        else:
            DatasetCatalog.register(name, loader)
            MetadataCatalog.get(name).set(
                json_file=json_file,
                image_root=image_root,
                evaluator_type="coco",
                id_dataset="synthetic",
                id_classes=list(SYNTHETIC_ID_CLASSES),
                thing_classes=list(SYNTHETIC_ID_CLASSES),
            )
    logger.debug("Synthetic benchmark registered under %s as %s.", root, sorted(names.values()))
    return names


def _load_split(name: str, split: str, root: str, spec: SyntheticBenchmarkSpec) -> List[dict]:
    """Load one split of the benchmark, generating the benchmark first if needed.

    Args:
        name (str): registered dataset name.
        split (str): one of ``SYNTHETIC_SPLITS``.
        root (str): benchmark folder.
        spec (SyntheticBenchmarkSpec): generation parameters.

    Returns:
        list[dict]: Detectron2 dataset dicts (with box annotations for the ID splits, none for
        the OOD split).
    """
    try:
        generate_synthetic_benchmark(root, spec)
    except PermissionError as e:
        raise PermissionError(
            f"Cannot write the synthetic benchmark under {root} ({e}); set DETECTRON2_DATASETS "
            "to a writable folder."
        ) from e
    paths = _benchmark_paths(root)  # as registered, not made absolute
    image_root, json_file = paths[f"{split}_images"], paths[f"{split}_json"]
    if split == "ood_test":
        return load_ood_image_list(
            json_file,
            image_root,
            f"The synthetic benchmark is generated on first use; delete {root} to generate it "
            "again.",
        )
    return load_coco_json(json_file, image_root, name)


def _benchmark_paths(root: str) -> Dict[str, str]:
    """The files and folders of the benchmark under ``root``, keyed as
    :func:`generate_synthetic_benchmark` returns them."""
    paths = {"root": root, "manifest": os.path.join(root, MANIFEST)}
    for split in SYNTHETIC_SPLITS:
        paths[f"{split}_images"] = os.path.join(root, split)
        paths[f"{split}_json"] = os.path.join(root, "annotations", f"{split}.json")
    return paths


def _manifest_header(spec: SyntheticBenchmarkSpec) -> dict:
    """What the manifest of a benchmark generated with ``spec`` records besides its files."""
    return {
        "generator": __name__,
        "generator_version": _GENERATOR_VERSION,
        "parameters": spec.as_dict(),
        "id_classes": list(SYNTHETIC_ID_CLASSES),
        "ood_classes": list(SYNTHETIC_OOD_CLASSES),
    }


def _generate_and_replace(root: str, spec: SyntheticBenchmarkSpec) -> None:
    """Generate the benchmark into a temporary sibling of ``root``, then put it in its place.

    Args:
        root (str): benchmark folder (absolute).
        spec (SyntheticBenchmarkSpec): generation parameters.

    Raises:
        FileExistsError: if ``root`` holds entries the generator did not write.
    """
    sizes = spec.split_sizes()
    logger.info(
        "Generating the synthetic benchmark (%d train, %d ID test, %d OOD test images of %dx%d, "
        "seed %d) under %s ...",
        sizes["train"],
        sizes["id_test"],
        sizes["ood_test"],
        spec.image_size,
        spec.image_size,
        spec.seed,
        root,
    )
    start = time.perf_counter()
    write = functools.partial(_write_benchmark, spec=spec)
    replace_folder(root, write, _OWNED_ENTRIES, "the synthetic benchmark")
    logger.info(
        "Synthetic benchmark written under %s: %d images in %.1f s.",
        root,
        sum(sizes.values()),
        time.perf_counter() - start,
    )


def _write_benchmark(folder: str, spec: SyntheticBenchmarkSpec) -> None:
    """Write every split, the annotation files and the manifest into a new ``folder``.

    Args:
        folder (str): output folder (created, its parent must exist).
        spec (SyntheticBenchmarkSpec): generation parameters.
    """
    image_size = spec.image_size
    written: List[str] = []
    for split_index, (split, num_images) in enumerate(spec.split_sizes().items()):
        os.makedirs(os.path.join(folder, split))
        classes = _SPLIT_CLASSES[split]
        images, annotations = [], []
        for image_index in range(num_images):
            rng = np.random.default_rng(
                np.random.SeedSequence(spec.seed, spawn_key=(split_index, image_index))
            )
            pixels, objects = render_scene(rng, classes, image_size)
            image_id = image_index + 1
            file_name = f"{image_id:06d}.png"
            _write_png(os.path.join(folder, split, file_name), pixels)
            written.append(f"{split}/{file_name}")
            images.append(
                {"id": image_id, "file_name": file_name, "height": image_size, "width": image_size}
            )
            for drawing, mask, visible_mask in objects:
                annotations.append(
                    _annotation(len(annotations) + 1, image_id, drawing, mask, visible_mask)
                )
        coco = {
            "info": {
                "description": f"vos_det synthetic benchmark, {split} split",
                "version": str(_GENERATOR_VERSION),
            },
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": _CATEGORY_IDS[name], "name": name, "supercategory": "shape"}
                for name in classes
            ],
        }
        relative = f"annotations/{split}.json"
        write_json(coco, os.path.join(folder, relative), compact=True)
        written.append(relative)
    write_manifest(folder, _manifest_header(spec), written)


def _annotation(
    annotation_id: int,
    image_id: int,
    drawing: ShapeDrawing,
    mask: np.ndarray,
    visible_mask: np.ndarray,
) -> dict:
    """COCO annotation of one shape; its box is the tight extent of the full shape's pixels.

    Args:
        annotation_id (int): unique id within the file.
        image_id (int): id of the image.
        drawing (ShapeDrawing): the shape.
        mask (np.ndarray): (H, W) bool mask of the full shape.
        visible_mask (np.ndarray): (H, W) bool mask of its pixels not hidden by later shapes.

    Returns:
        dict: annotation with ``bbox`` [x, y, w, h] in pixels, ``area`` = visible pixel count.
    """
    rows, columns = np.nonzero(mask)
    x0, y0 = int(columns.min()), int(rows.min())
    width, height = int(columns.max()) - x0 + 1, int(rows.max()) - y0 + 1
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": _CATEGORY_IDS[drawing.shape],
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
