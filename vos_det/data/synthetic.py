"""The embedded synthetic benchmark: procedural shape images for open-set detection.

Each image is a textured, cluttered background (colour gradient, smooth blotches, pixel noise,
a few thin lines and small dots that are not objects) with one to four filled shapes of random
size, colour and rotation drawn on top; later shapes may partially hide earlier ones.

* ID classes (trained and evaluated): circle, square, triangle.
* OOD classes (never in the ID splits): star, cross, ring, crescent.

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
parameters (``"shape"``, see :class:`ShapeSpec`), its ``"visible_fraction"`` and, as ``"area"``,
its visible pixel count. The output depends only on the parameters: the same seed gives the same
bytes, and an image depends only on the seed, its split and its index.

:func:`register_synthetic_benchmark` registers the three splits with Detectron2 without
generating anything; the folder is generated the first time a split is loaded, then reused.
"""

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from typing import Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json

from .ood_datasets import load_ood_image_list, register_ood_dataset

__all__ = [
    "SYNTHETIC_ID_CLASSES",
    "SYNTHETIC_OOD_CLASSES",
    "SYNTHETIC_SPLITS",
    "ShapeSpec",
    "draw_shape_mask",
    "generate_synthetic_benchmark",
    "register_synthetic_benchmark",
]

logger = logging.getLogger(__name__)

SYNTHETIC_ID_CLASSES = ("circle", "square", "triangle")
SYNTHETIC_OOD_CLASSES = ("star", "cross", "ring", "crescent")
SYNTHETIC_SPLITS = ("train", "id_test", "ood_test")

# Bump when the generated content changes: folders written by another version are regenerated.
_GENERATOR_VERSION = 2
_MANIFEST = "MANIFEST.json"
_OWNED_ENTRIES = {*SYNTHETIC_SPLITS, "annotations", _MANIFEST}
_CATEGORY_IDS = {
    name: index + 1 for index, name in enumerate(SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES)
}
_SPLIT_CLASSES = {
    "train": SYNTHETIC_ID_CLASSES,
    "id_test": SYNTHETIC_ID_CLASSES,
    "ood_test": SYNTHETIC_OOD_CLASSES,
}

# Scene layout, in pixels of a 128x128 image (scaled linearly with the image size).
_REFERENCE_SIZE = 128
_MIN_IMAGE_SIZE = 64
_RADIUS_RANGE = (9.0, 24.0)  # circumradius of a shape: 18-48 px across
_MAX_OBJECTS = 4  # shapes per image: 1 to _MAX_OBJECTS
_NEAR_PLACEMENT_PROBABILITY = 0.2  # chance to put a shape next to an earlier one (occlusion)
_PLACEMENT_ATTEMPTS = 20
_MIN_VISIBLE_FRACTION = 0.4  # no shape may be more than 60% hidden by later ones
_MIN_COLOUR_DISTANCE = 100.0  # RGB distance between a shape and the background it covers
_COLOUR_CANDIDATES = 8
# Shape proportion ("detail") ranges; shapes missing here have none.
_DETAIL_RANGES = {
    "star": (0.4, 0.55),  # inner / outer radius
    "cross": (0.3, 0.45),  # half arm width / radius
    "ring": (0.45, 0.65),  # hole radius / radius
    "crescent": (0.35, 0.6),  # offset of the cut-out disc / radius
}
_REGULAR_POLYGONS = {"square": (4, 45.0), "triangle": (3, 90.0)}
_ROUND_VERTICES = 64
_SUPERSAMPLING = 4  # sub-pixels per pixel side when rasterising shapes
_FIXED_POINT_SHIFT = 4  # polygon vertices are given to OpenCV with 1/16 sub-pixel precision


@dataclasses.dataclass(frozen=True)
class ShapeSpec:
    """Everything needed to draw one shape.

    Attributes:
        shape (str): class name, one of ``SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES``.
        center (tuple[float, float]): (x, y) of the shape's centre in pixels.
        radius (float): circumradius in pixels: the shape lies within this distance of the
            centre.
        angle (float): rotation in degrees.
        detail (float): proportion of the shape (see ``_DETAIL_RANGES``): star inner/outer
            radius, cross half arm width, ring hole radius, crescent cut-out offset, each
            relative to ``radius``; 0 for the other shapes.
        colour (tuple[int, int, int]): fill colour (R, G, B), 0-255.
    """

    shape: str
    center: Tuple[float, float]
    radius: float
    angle: float
    detail: float
    colour: Tuple[int, int, int]

    def to_json(self) -> dict:
        """The spec as a JSON-serialisable dict (the ``"shape"`` field of an annotation)."""
        return {
            "name": self.shape,
            "center": list(self.center),
            "radius": self.radius,
            "angle": self.angle,
            "detail": self.detail,
            "colour": list(self.colour),
        }

    @classmethod
    def from_json(cls, data: dict) -> "ShapeSpec":
        """Inverse of :meth:`to_json`."""
        return cls(
            shape=data["name"],
            center=(float(data["center"][0]), float(data["center"][1])),
            radius=float(data["radius"]),
            angle=float(data["angle"]),
            detail=float(data["detail"]),
            colour=(int(data["colour"][0]), int(data["colour"][1]), int(data["colour"][2])),
        )


def draw_shape_mask(spec: ShapeSpec, image_size: int) -> np.ndarray:
    """Rasterise a shape: the pixels the generator paints with its colour.

    A pixel belongs to the shape when at least half of its area does (measured on a
    ``_SUPERSAMPLING`` x ``_SUPERSAMPLING`` grid of sub-pixels).

    Args:
        spec (ShapeSpec): the shape.
        image_size (int): side of the square image in pixels.

    Returns:
        np.ndarray: (image_size, image_size) bool mask, True on the shape.
    """
    filled, cut_out = _outline(spec)
    fine = np.zeros((image_size * _SUPERSAMPLING,) * 2, dtype=np.uint8)
    cv2.fillPoly(fine, [_fixed_point(p) for p in filled], 1, cv2.LINE_8, _FIXED_POINT_SHIFT)
    if cut_out:
        cv2.fillPoly(fine, [_fixed_point(p) for p in cut_out], 0, cv2.LINE_8, _FIXED_POINT_SHIFT)
    coverage = fine.reshape(image_size, _SUPERSAMPLING, image_size, _SUPERSAMPLING).sum((1, 3))
    return coverage * 2 >= _SUPERSAMPLING**2


def generate_synthetic_benchmark(
    root: str,
    num_train: int = 400,
    num_id_test: int = 100,
    num_ood_test: int = 100,
    image_size: int = 128,
    seed: int = 0,
) -> Dict[str, str]:
    """Write the synthetic benchmark under ``root``, or reuse it if it is already there.

    A folder whose ``MANIFEST.json`` records the same parameters, and whose files all match the
    checksums listed there, is left untouched. Otherwise the benchmark is generated into a
    temporary sibling folder that then replaces ``root``; a lock on the parent folder keeps
    concurrent processes (e.g. data-parallel workers) from generating it twice.

    Args:
        root (str): output folder. It must be missing, empty or a synthetic benchmark folder (an
            existing folder holding anything else is never overwritten).
        num_train (int): images in the train split.
        num_id_test (int): images in the ID test split.
        num_ood_test (int): images in the OOD test split.
        image_size (int): side of the square images in pixels (>= 64); object sizes and clutter
            scale with it (objects are 18-48 px across at 128).
        seed (int): random seed (>= 0).

    Returns:
        dict[str, str]: ``"root"``, ``"manifest"``, and for each split ``s`` of
        ``SYNTHETIC_SPLITS`` the image folder ``f"{s}_images"`` and COCO file ``f"{s}_json"``.

    Raises:
        ValueError: if a parameter is invalid.
        FileExistsError: if ``root`` holds files that are not a synthetic benchmark.
    """
    parameters = _checked_parameters(num_train, num_id_test, num_ood_test, image_size, seed)
    root = os.path.abspath(os.path.expanduser(root))
    if not _is_complete(root, parameters):
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        with _exclusive_lock(parent):
            if not _is_complete(root, parameters):  # another process may have just written it
                _generate_and_replace(root, parameters)
    return _benchmark_paths(root)


def register_synthetic_benchmark(
    root: str,
    name_prefix: str = "synthetic",
    num_train: int = 400,
    num_id_test: int = 100,
    num_ood_test: int = 100,
    image_size: int = 128,
    seed: int = 0,
) -> Dict[str, str]:
    """Register the synthetic benchmark's splits with Detectron2; skip names already registered.

    Nothing is generated here: loading a split (``DatasetCatalog.get``) first calls
    :func:`generate_synthetic_benchmark` with these parameters, which writes ``root`` if it is
    missing or incomplete and otherwise only checks it.

    * ``{prefix}_train``, ``{prefix}_id_test``: ID sets loaded with Detectron2's
      ``load_coco_json`` (``thing_classes`` = ``SYNTHETIC_ID_CLASSES``, ``evaluator_type="coco"``,
      ``is_ood=False``, ``id_dataset="synthetic"``).
    * ``{prefix}_ood_test``: OOD image list registered by :func:`register_ood_dataset`
      (``is_ood=True``, ``id_classes`` = ``SYNTHETIC_ID_CLASSES``).

    Args:
        root (str): benchmark folder, normally ``$DETECTRON2_DATASETS/synthetic``.
        name_prefix (str): prefix of the dataset names.
        num_train, num_id_test, num_ood_test, image_size, seed: generation parameters, see
            :func:`generate_synthetic_benchmark`.

    Returns:
        dict[str, str]: split ("train", "id_test", "ood_test") -> registered dataset name.
    """
    parameters = _checked_parameters(num_train, num_id_test, num_ood_test, image_size, seed)
    paths = _benchmark_paths(root)
    names = {split: f"{name_prefix}_{split}" for split in SYNTHETIC_SPLITS}
    for split, name in names.items():
        if name in DatasetCatalog:
            continue
        image_root, json_file = paths[f"{split}_images"], paths[f"{split}_json"]
        loader = functools.partial(_load_split, name, split, paths["root"], parameters)
        if split == "ood_test":
            register_ood_dataset(
                name,
                image_root,
                json_file,
                id_classes=list(SYNTHETIC_ID_CLASSES),
                missing_hint=_regenerate_hint(paths["root"]),
            )
            # Same metadata as register_ood_dataset gives; the loader generates the files first.
            DatasetCatalog.remove(name)
            DatasetCatalog.register(name, loader)
        else:
            DatasetCatalog.register(name, loader)
            MetadataCatalog.get(name).set(
                json_file=json_file,
                image_root=image_root,
                evaluator_type="coco",
                is_ood=False,
                id_dataset="synthetic",
                id_classes=list(SYNTHETIC_ID_CLASSES),
                thing_classes=list(SYNTHETIC_ID_CLASSES),
            )
    logger.debug("Synthetic benchmark registered under %s as %s.", root, sorted(names.values()))
    return names


def _load_split(name: str, split: str, root: str, parameters: Dict[str, int]) -> List[dict]:
    """Load one split of the benchmark, generating the benchmark first if needed.

    Args:
        name (str): registered dataset name.
        split (str): one of ``SYNTHETIC_SPLITS``.
        root (str): benchmark folder.
        parameters (dict[str, int]): generation parameters.

    Returns:
        list[dict]: Detectron2 dataset dicts (with box annotations for the ID splits, none for
        the OOD split).
    """
    try:
        generate_synthetic_benchmark(root, **parameters)
    except PermissionError as e:
        raise PermissionError(
            f"Cannot write the synthetic benchmark under {root} ({e}); set DETECTRON2_DATASETS "
            "to a writable folder."
        ) from e
    paths = _benchmark_paths(root)  # as registered, not made absolute
    image_root, json_file = paths[f"{split}_images"], paths[f"{split}_json"]
    if split == "ood_test":
        return load_ood_image_list(json_file, image_root, _regenerate_hint(root))
    return load_coco_json(json_file, image_root, name)


def _regenerate_hint(root: str) -> str:
    """Sentence telling the user how to get a damaged benchmark folder written again."""
    return f"The synthetic benchmark is generated on first use; delete {root} to generate it again."


def _checked_parameters(
    num_train: int, num_id_test: int, num_ood_test: int, image_size: int, seed: int
) -> Dict[str, int]:
    """Validate the generation parameters.

    Returns:
        dict[str, int]: the parameters by name, as recorded in the manifest.

    Raises:
        ValueError: naming the first invalid parameter.
    """
    parameters = {
        "num_train": num_train,
        "num_id_test": num_id_test,
        "num_ood_test": num_ood_test,
        "image_size": image_size,
        "seed": seed,
    }
    minimum = {"image_size": _MIN_IMAGE_SIZE, "seed": 0}
    for key, value in parameters.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{key} must be an integer, got {value!r}.")
        if value < minimum.get(key, 1):
            raise ValueError(f"{key} must be >= {minimum.get(key, 1)}, got {value}.")
    return {key: int(value) for key, value in parameters.items()}


def _benchmark_paths(root: str) -> Dict[str, str]:
    """The files and folders of the benchmark under ``root``, keyed as
    :func:`generate_synthetic_benchmark` returns them."""
    paths = {"root": root, "manifest": os.path.join(root, _MANIFEST)}
    for split in SYNTHETIC_SPLITS:
        paths[f"{split}_images"] = os.path.join(root, split)
        paths[f"{split}_json"] = os.path.join(root, "annotations", f"{split}.json")
    return paths


def _split_sizes(parameters: Dict[str, int]) -> Dict[str, int]:
    """Number of images per split."""
    return {
        "train": parameters["num_train"],
        "id_test": parameters["num_id_test"],
        "ood_test": parameters["num_ood_test"],
    }


# ---------------------------------------------------------------------------------------------
# Cache: manifest check, locking, atomic replacement
# ---------------------------------------------------------------------------------------------


def _is_complete(root: str, parameters: Dict[str, int]) -> bool:
    """Whether ``root`` holds a benchmark generated with ``parameters``, with every file intact.

    Args:
        root (str): benchmark folder.
        parameters (dict[str, int]): expected generation parameters.

    Returns:
        bool: True if the manifest matches and every file it lists has its recorded sha256.
    """
    try:
        with open(os.path.join(root, _MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        if (
            manifest.get("generator_version") != _GENERATOR_VERSION
            or manifest.get("parameters") != parameters
        ):
            return False
        return all(
            _sha256(os.path.join(root, relative)) == digest
            for relative, digest in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


@contextlib.contextmanager
def _exclusive_lock(folder: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on an existing folder inside the block (no lock file)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _generate_and_replace(root: str, parameters: Dict[str, int]) -> None:
    """Generate the benchmark into a temporary sibling of ``root``, then put it in its place.

    Args:
        root (str): benchmark folder (absolute).
        parameters (dict[str, int]): generation parameters.

    Raises:
        FileExistsError: if ``root`` holds entries the generator did not write.
    """
    if os.path.isdir(root):
        foreign = sorted(set(os.listdir(root)) - _OWNED_ENTRIES)
        if foreign:
            raise FileExistsError(
                f"{root} must hold the synthetic benchmark, but it contains other files "
                f"({', '.join(foreign[:5])}); choose a new or empty folder."
            )
    elif os.path.exists(root):
        raise FileExistsError(f"{root} exists and is not a folder; choose another path.")
    sizes = _split_sizes(parameters)
    logger.info(
        "Generating the synthetic benchmark (%d train, %d ID test, %d OOD test images of %dx%d, "
        "seed %d) under %s ...",
        sizes["train"],
        sizes["id_test"],
        sizes["ood_test"],
        parameters["image_size"],
        parameters["image_size"],
        parameters["seed"],
        root,
    )
    start = time.perf_counter()
    staging, retired = f"{root}.tmp-{os.getpid()}", f"{root}.old-{os.getpid()}"
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        _write_benchmark(staging, parameters)
        if os.path.isdir(root):
            os.rename(root, retired)
        os.rename(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    logger.info(
        "Synthetic benchmark written under %s: %d images in %.1f s.",
        root,
        sum(sizes.values()),
        time.perf_counter() - start,
    )


def _write_benchmark(folder: str, parameters: Dict[str, int]) -> None:
    """Write every split, the annotation files and the manifest into an empty ``folder``.

    Args:
        folder (str): output folder (created).
        parameters (dict[str, int]): generation parameters.
    """
    image_size = parameters["image_size"]
    written: List[str] = []
    for split_index, (split, num_images) in enumerate(_split_sizes(parameters).items()):
        os.makedirs(os.path.join(folder, split))
        classes = _SPLIT_CLASSES[split]
        images, annotations = [], []
        for image_index in range(num_images):
            rng = np.random.default_rng(
                np.random.SeedSequence(parameters["seed"], spawn_key=(split_index, image_index))
            )
            pixels, objects = _render_scene(rng, classes, image_size)
            image_id = image_index + 1
            file_name = f"{image_id:06d}.png"
            _write_png(os.path.join(folder, split, file_name), pixels)
            written.append(f"{split}/{file_name}")
            images.append(
                {"id": image_id, "file_name": file_name, "height": image_size, "width": image_size}
            )
            for spec, mask, visible_mask in objects:
                annotations.append(
                    _annotation(len(annotations) + 1, image_id, spec, mask, visible_mask)
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
        _write_json(os.path.join(folder, relative), coco)
        written.append(relative)
    manifest = {
        "generator": __name__,
        "generator_version": _GENERATOR_VERSION,
        "parameters": parameters,
        "id_classes": list(SYNTHETIC_ID_CLASSES),
        "ood_classes": list(SYNTHETIC_OOD_CLASSES),
        "files": {relative: _sha256(os.path.join(folder, relative)) for relative in written},
    }
    _write_json(os.path.join(folder, _MANIFEST), manifest)


def _annotation(
    annotation_id: int, image_id: int, spec: ShapeSpec, mask: np.ndarray, visible_mask: np.ndarray
) -> dict:
    """COCO annotation of one shape; its box is the tight extent of the full shape's pixels.

    Args:
        annotation_id (int): unique id within the file.
        image_id (int): id of the image.
        spec (ShapeSpec): the shape.
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
        "category_id": _CATEGORY_IDS[spec.shape],
        "bbox": [float(x0), float(y0), float(width), float(height)],
        "area": int(visible_mask.sum()),
        "iscrowd": 0,
        "visible_fraction": round(float(visible_mask.sum() / mask.sum()), 4),
        "shape": spec.to_json(),
    }


def _write_png(path: str, pixels: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG."""
    if not cv2.imwrite(path, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write image {path}.")


def _write_json(path: str, data: dict) -> None:
    """Write JSON (creating the parent folder) with a fixed layout, so equal data gives equal
    bytes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=None, separators=(",", ":"))


def _sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def _render_scene(
    rng: np.random.Generator, classes: Sequence[str], image_size: int
) -> Tuple[np.ndarray, List[Tuple[ShapeSpec, np.ndarray, np.ndarray]]]:
    """Draw one image: a cluttered background, then one to ``_MAX_OBJECTS`` shapes.

    A shape whose placement would leave an earlier shape less than ``_MIN_VISIBLE_FRACTION``
    visible is placed again (after ``_PLACEMENT_ATTEMPTS`` failures it is left out); the first
    shape always fits, so every image holds at least one.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        classes (Sequence[str]): classes to draw from.
        image_size (int): side of the image in pixels.

    Returns:
        tuple: (image, objects): image (H, W, 3) uint8 RGB; objects in drawing order, each
        (spec, (H, W) bool mask of the full shape, (H, W) bool mask of its visible pixels).
    """
    image = _background(rng, image_size)
    specs: List[ShapeSpec] = []
    masks: List[np.ndarray] = []
    visible: List[np.ndarray] = []
    for _ in range(int(rng.integers(1, _MAX_OBJECTS + 1))):
        shape = classes[int(rng.integers(len(classes)))]
        for _ in range(_PLACEMENT_ATTEMPTS):
            spec = _sample_geometry(rng, shape, image_size, specs)
            mask = draw_shape_mask(spec, image_size)
            uncovered = [v & ~mask for v in visible]
            if all(u.sum() >= _MIN_VISIBLE_FRACTION * m.sum() for u, m in zip(uncovered, masks)):
                break
        else:
            continue  # every placement hid too much of an earlier shape: leave this one out
        spec = dataclasses.replace(spec, colour=_pick_colour(rng, image, mask))
        image[mask] = spec.colour
        specs.append(spec)
        masks.append(mask)
        visible = uncovered + [mask]
    return image, list(zip(specs, masks, visible))


def _sample_geometry(
    rng: np.random.Generator, shape: str, image_size: int, placed: Sequence[ShapeSpec]
) -> ShapeSpec:
    """Sample the size, position, rotation and proportion of a shape (colour left black).

    The shape lies inside the image. With probability ``_NEAR_PLACEMENT_PROBABILITY`` it is
    centred next to an earlier shape, so that the two overlap or nearly touch.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        shape (str): class name.
        image_size (int): side of the image in pixels.
        placed (Sequence[ShapeSpec]): shapes already in the image.

    Returns:
        ShapeSpec: the shape, with values rounded as stored in the annotations.
    """
    scale = image_size / _REFERENCE_SIZE
    radius = rng.uniform(*_RADIUS_RANGE) * scale
    if placed and rng.random() < _NEAR_PLACEMENT_PROBABILITY:
        anchor = placed[int(rng.integers(len(placed)))]
        distance = (anchor.radius + radius) * rng.uniform(0.5, 1.0)
        direction = rng.uniform(0.0, 2.0 * math.pi)
        center = np.array(anchor.center) + distance * np.array(
            [math.cos(direction), math.sin(direction)]
        )
        center = np.clip(center, radius, image_size - radius)
    else:
        center = rng.uniform(radius, image_size - radius, size=2)
    low, high = _DETAIL_RANGES.get(shape, (0.0, 0.0))
    return ShapeSpec(
        shape=shape,
        center=(round(float(center[0]), 3), round(float(center[1]), 3)),
        radius=round(float(radius), 3),
        angle=round(float(rng.uniform(0.0, 360.0)), 3),
        detail=round(float(rng.uniform(low, high)), 3),
        colour=(0, 0, 0),
    )


def _pick_colour(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray
) -> Tuple[int, int, int]:
    """A random colour that stands out from the pixels a shape will cover.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        image (np.ndarray): (H, W, 3) uint8 RGB image drawn so far.
        mask (np.ndarray): (H, W) bool mask of the shape.

    Returns:
        tuple[int, int, int]: the first of ``_COLOUR_CANDIDATES`` random RGB colours at least
        ``_MIN_COLOUR_DISTANCE`` from the mean covered colour, else the farthest one.
    """
    candidates = rng.integers(0, 256, size=(_COLOUR_CANDIDATES, 3))
    distances = np.linalg.norm(candidates - image[mask].mean(axis=0), axis=1)
    far_enough = np.nonzero(distances >= _MIN_COLOUR_DISTANCE)[0]
    best = far_enough[0] if far_enough.size else int(np.argmax(distances))
    return tuple(int(c) for c in candidates[best])


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A textured, cluttered background without any shape-like object.

    Colour gradient + smooth blotches + up to three thin lines and four dots (at most 7 px
    across at 128 px, well below the smallest shape) + pixel noise.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        image_size (int): side of the image in pixels.

    Returns:
        np.ndarray: (image_size, image_size, 3) uint8 RGB image.
    """
    scale = image_size / _REFERENCE_SIZE
    coordinates = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    direction = rng.uniform(0.0, 2.0 * math.pi)
    ramp = coordinates[None, :] * math.cos(direction) + coordinates[:, None] * math.sin(direction)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    start, end = rng.uniform(30.0, 225.0, size=(2, 3)).astype(np.float32)
    image = start + (end - start) * ramp[..., None]
    cells = int(rng.integers(3, 8))
    blotches = rng.normal(0.0, rng.uniform(10.0, 30.0), size=(cells, cells, 3)).astype(np.float32)
    image += cv2.resize(blotches, (image_size, image_size), interpolation=cv2.INTER_CUBIC)

    def point() -> Tuple[int, int]:
        x, y = rng.uniform(0.0, image_size, size=2)
        return int(x), int(y)

    def colour() -> Tuple[float, float, float]:
        return tuple(float(c) for c in rng.uniform(0.0, 255.0, size=3))

    for _ in range(int(rng.integers(0, 4))):  # thin lines across the image
        cv2.line(image, point(), point(), colour(), max(1, round(scale)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 5))):  # dots
        radius = max(1, round(rng.uniform(1.0, 3.5) * scale))
        cv2.circle(image, point(), radius, colour(), -1, cv2.LINE_AA)
    image += rng.normal(0.0, rng.uniform(3.0, 8.0), size=image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _outline(spec: ShapeSpec) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Polygons of a shape.

    Args:
        spec (ShapeSpec): the shape.

    Returns:
        tuple[list[np.ndarray], list[np.ndarray]]: (filled, cut_out): polygons, each (K, 2)
        float (x, y) pixel coordinates; the shape is the union of ``filled`` minus the union of
        ``cut_out``.
    """
    radius, detail = spec.radius, spec.detail
    if spec.shape in _REGULAR_POLYGONS:
        num_vertices, first_vertex = _REGULAR_POLYGONS[spec.shape]
        angles = np.deg2rad(first_vertex + 360.0 * np.arange(num_vertices) / num_vertices)
        filled = [radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)]
        cut_out = []
    elif spec.shape == "circle":
        filled, cut_out = [_disc(radius)], []
    elif spec.shape == "ring":
        filled, cut_out = [_disc(radius)], [_disc(detail * radius)]
    elif spec.shape == "crescent":
        cut = _disc(radius) + [detail * radius, 0.0]
        filled, cut_out = [_disc(radius)], [cut]
    elif spec.shape == "star":
        angles = np.deg2rad(90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, radius, detail * radius)
        filled, cut_out = [radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)], []
    elif spec.shape == "cross":
        half_width = detail * radius
        arm = math.sqrt(radius**2 - half_width**2)  # arm corners on the circumcircle
        w, a = half_width, arm
        filled = [
            np.array(
                [[w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]]
                + [[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w]]
            )
        ]
        cut_out = []
    else:
        raise ValueError(
            f"Unknown shape {spec.shape!r}; expected one of "
            f"{', '.join(SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES)}."
        )
    return [_place(p, spec) for p in filled], [_place(p, spec) for p in cut_out]


def _disc(radius: float) -> np.ndarray:
    """(``_ROUND_VERTICES``, 2) polygon of a circle of ``radius`` centred at the origin."""
    angles = np.linspace(0.0, 2.0 * math.pi, _ROUND_VERTICES, endpoint=False)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _place(points: np.ndarray, spec: ShapeSpec) -> np.ndarray:
    """Rotate (K, 2) points about the origin by ``spec.angle`` and move them to ``spec.center``."""
    theta = math.radians(spec.angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return points @ rotation.T + np.array(spec.center)


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """(K, 2) pixel coordinates -> OpenCV fixed-point polygon on the supersampled grid.

    Sub-pixel ``j`` covers ``[j, j + 1) / _SUPERSAMPLING`` in pixels; OpenCV puts its centre at
    ``j``.
    """
    scaled = points * _SUPERSAMPLING - 0.5
    return np.round(scaled * (1 << _FIXED_POINT_SHIFT)).astype(np.int32)
