"""The embedded classification benchmark: one shape per image, generated once and cached.

Images are drawn with the shape code of the synthetic detection benchmark
(:mod:`vos_det.core.shape_scenes`): a textured, cluttered background and, on top, one filled
shape of random size, position, rotation and colour.

* ``train``, ``id_test``: one ID shape (circle, square, triangle) per image, label = its index in
  ``SYNTHETIC_ID_CLASSES``; classes balanced.
* ``ood_near``: one unseen shape (star, cross, ring, crescent) per image, label = its index in
  ``SYNTHETIC_OOD_CLASSES``.
* ``ood_far``: the cluttered background alone, no shape (label -1).

:func:`generate_classification_benchmark` writes, under a root folder, ``<split>.npz`` for each
split (``images`` [N, H, W, 3] uint8 RGB, ``labels`` [N] int64) and a ``MANIFEST.json``; a folder
generated with the same :class:`ClassificationBenchmarkSpec` is reused. An image depends only on
the seed, its split and its index.
"""

import dataclasses
import logging
import os
import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..core.cached_folder import (
    MANIFEST,
    check_integer_fields,
    exclusive_lock,
    is_intact,
    replace_folder,
    write_manifest,
)
from ..core.files import default_datasets_root
from ..core.shape_scenes import (
    DETAIL_RANGES,
    SYNTHETIC_ID_CLASSES,
    SYNTHETIC_OOD_CLASSES,
    ShapeDrawing,
    draw_background,
    draw_shape_mask,
    pick_colour,
)

__all__ = [
    "CLASSIFICATION_SPLITS",
    "ClassificationBenchmarkSpec",
    "default_classification_root",
    "generate_classification_benchmark",
    "load_split",
    "render_classification_image",
]

logger = logging.getLogger(__name__)

CLASSIFICATION_SPLITS = ("train", "id_test", "ood_near", "ood_far")
#: The shapes each split draws from (None: no shape, background only).
_SPLIT_SHAPES = {
    "train": SYNTHETIC_ID_CLASSES,
    "id_test": SYNTHETIC_ID_CLASSES,
    "ood_near": SYNTHETIC_OOD_CLASSES,
    "ood_far": None,
}
# Bump when the generated content changes: folders written by another version are regenerated.
_GENERATOR_VERSION = 1
_OWNED_ENTRIES = {*(f"{split}.npz" for split in CLASSIFICATION_SPLITS), MANIFEST}
_RADIUS_FRACTION = (0.25, 0.45)  # circumradius of the shape, relative to the image side


@dataclasses.dataclass(frozen=True)
class ClassificationBenchmarkSpec:
    """The generation parameters of the classification benchmark; its output depends only on them.

    Attributes:
        num_train (int): images in ``train`` (>= 1).
        num_test (int): images in each of ``id_test``, ``ood_near`` and ``ood_far`` (>= 1).
        image_size (int): side of the square images in pixels (>= 16).
        seed (int): random seed (>= 0).

    Raises:
        ValueError: naming the first field that is not an integer or is below its minimum.
    """

    num_train: int = 6000
    num_test: int = 1000
    image_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check_integer_fields(self, {"image_size": 16, "seed": 0})

    def split_sizes(self) -> Dict[str, int]:
        """Number of images per split, keyed and ordered as ``CLASSIFICATION_SPLITS``."""
        return {
            split: self.num_train if split == "train" else self.num_test
            for split in CLASSIFICATION_SPLITS
        }


def default_classification_root() -> str:
    """``$DETECTRON2_DATASETS/synthetic_classification`` ("datasets/..." when unset)."""
    return os.path.join(default_datasets_root(), "synthetic_classification")


def render_classification_image(
    rng: np.random.Generator, shape: Optional[str], image_size: int
) -> np.ndarray:
    """Draw one image: a cluttered background and, unless ``shape`` is None, one shape on it.

    The shape's circumradius is uniform in ``_RADIUS_FRACTION`` of the image side, it lies
    entirely inside the image, and its colour stands out from the pixels it covers.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        shape (str or None): a class of ``SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES``.
        image_size (int): side of the image in pixels.

    Returns:
        np.ndarray: (image_size, image_size, 3) uint8 RGB image.
    """
    image = draw_background(rng, image_size)
    if shape is None:
        return image
    radius = rng.uniform(*_RADIUS_FRACTION) * image_size
    center = rng.uniform(radius, image_size - radius, size=2)
    drawing = ShapeDrawing(
        shape=shape,
        center=(float(center[0]), float(center[1])),
        radius=float(radius),
        angle=float(rng.uniform(0.0, 360.0)),
        detail=float(rng.uniform(*DETAIL_RANGES.get(shape, (0.0, 0.0)))),
        colour=(0, 0, 0),
    )
    mask = draw_shape_mask(drawing, image_size)
    image[mask] = pick_colour(rng, image, mask)
    return image


def generate_classification_benchmark(
    root: str, spec: ClassificationBenchmarkSpec = ClassificationBenchmarkSpec()
) -> str:
    """Write the benchmark under ``root``, or reuse it if it is already there, intact.

    Generation goes into a temporary sibling folder that then replaces ``root``, under a lock on
    the parent folder (:mod:`vos_det.core.cached_folder`), so concurrent processes never see half
    a benchmark nor generate it twice.

    Args:
        root (str): output folder; missing, empty or a classification benchmark folder.
        spec (ClassificationBenchmarkSpec): generation parameters.

    Returns:
        str: ``root``, absolute.

    Raises:
        FileExistsError: if ``root`` holds files that are not a classification benchmark.
    """
    root = os.path.abspath(os.path.expanduser(root))
    header = _manifest_header(spec)
    if not is_intact(root, header):
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        with exclusive_lock(parent):
            if not is_intact(root, header):  # another process may have just written it
                start = time.perf_counter()
                replace_folder(
                    root,
                    lambda folder: _write_benchmark(folder, spec),
                    _OWNED_ENTRIES,
                    "the classification benchmark",
                )
                logger.info(
                    "Classification benchmark written under %s in %.1f s.",
                    root,
                    time.perf_counter() - start,
                )
    return root


def load_split(root: str, split: str) -> Tuple[Tensor, Tensor]:
    """Load one split of a generated benchmark.

    Args:
        root (str): benchmark folder (see :func:`generate_classification_benchmark`).
        split (str): one of ``CLASSIFICATION_SPLITS``.

    Returns:
        tuple[Tensor, Tensor]: images [N, 3, H, W] float32 in [0, 1], labels [N] int64 (the ID
        class for ``train``/``id_test``, the OOD shape for ``ood_near``, -1 for ``ood_far``).
    """
    if split not in CLASSIFICATION_SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(CLASSIFICATION_SPLITS)}.")
    with np.load(os.path.join(root, f"{split}.npz")) as data:
        images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float().div_(255.0)
        return images.contiguous(), torch.from_numpy(data["labels"])


def _write_benchmark(folder: str, spec: ClassificationBenchmarkSpec) -> None:
    """Write every split and the manifest into a new ``folder``."""
    os.makedirs(folder)
    written = []
    for split_index, (split, num_images) in enumerate(spec.split_sizes().items()):
        shapes = _SPLIT_SHAPES[split]
        labels = np.arange(num_images) % len(shapes) if shapes else np.full(num_images, -1)
        images = np.empty((num_images, spec.image_size, spec.image_size, 3), dtype=np.uint8)
        for index, label in enumerate(labels):
            rng = np.random.default_rng(
                np.random.SeedSequence(spec.seed, spawn_key=(split_index, index))
            )
            shape = shapes[label] if shapes else None
            images[index] = render_classification_image(rng, shape, spec.image_size)
        np.savez_compressed(os.path.join(folder, f"{split}.npz"), images=images, labels=labels)
        written.append(f"{split}.npz")
    write_manifest(folder, _manifest_header(spec), written)


def _manifest_header(spec: ClassificationBenchmarkSpec) -> dict:
    """What the manifest of a benchmark generated with ``spec`` records besides its files."""
    return {
        "generator": __name__,
        "generator_version": _GENERATOR_VERSION,
        "parameters": dataclasses.asdict(spec),
        "id_classes": list(SYNTHETIC_ID_CLASSES),
        "ood_classes": list(SYNTHETIC_OOD_CLASSES),
    }
