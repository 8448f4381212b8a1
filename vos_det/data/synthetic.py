"""The embedded synthetic benchmark: generation, caching and registration with Detectron2.

The images are procedural shape scenes (see :mod:`vos_det.core.shape_scenes`): ID classes circle,
square, triangle (trained and evaluated); OOD classes star, cross, ring, crescent (never in the ID
splits). The open-set split ``mixed_test`` mixes both: each object is known (ID) or unknown (OOD)
with probability 1/2, so an image may also hold only known or only unknown objects.

Three ID classes keep the benchmark learnable from scratch on a CPU: a GN ResNet-18 FPN reaches
AP50 60-80 in 800 iterations, where five classes (adding ellipse and pentagon) left it at AP50
23-46 after 400-800 iterations (measurements in the README).

:func:`generate_synthetic_benchmark` writes, under a root folder::

    train/000001.png ...        ID objects only
    id_test/000001.png ...      ID objects only
    ood_test/000001.png ...     OOD objects only (no ID object at all)
    mixed_test/000001.png ...   ID and OOD objects (open set)
    annotations/train.json      COCO format: images, annotations (bbox [x, y, w, h]), categories
    annotations/id_test.json    COCO format, like train.json
    annotations/ood_test.json   COCO format: the images, and their OOD objects for reference
    annotations/mixed_test.json COCO format: the ID classes and "unknown" (every OOD object)
    MANIFEST.json               generation parameters and the sha256 of every file

Category ids are 1-3 for the ID classes and 4-7 for the OOD classes; in ``mixed_test.json``
every OOD object has the category "unknown", id 8 (no id means two things across the files),
and its ``"shape"`` record below still names its class. A box is the tight extent
of the full shape in pixels (pixel ``i`` covers ``[i, i + 1)``), also where a later shape hides
part of it; no shape is more than 60% hidden. Each annotation also records the shape's drawing
parameters (``"shape"``, see :class:`~vos_det.core.shape_scenes.ShapeDrawing`), its
``"visible_fraction"`` and, as ``"area"``, its visible pixel count. The output depends only on
the :class:`SyntheticBenchmarkSpec`: the same seed gives the same bytes, and an image depends
only on the seed, its split and its index (the files are written by
:mod:`vos_det.data.synthetic_writer`).

:func:`register_synthetic_benchmark` registers the four splits with Detectron2 without
generating anything; the folder is generated the first time a split is loaded, then reused.
"""

import dataclasses
import functools
import logging
import numbers
import os
import time
from typing import Callable, Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json

from ..core.cached_folder import (
    MANIFEST,
    check_integer_fields,
    exclusive_lock,
    is_intact,
    replace_folder,
)
from .ood_datasets import load_ood_image_list, register_ood_dataset
from .open_set_datasets import load_open_set_json, register_open_set_dataset
from ..core.shape_scenes import MIN_IMAGE_SIZE, SYNTHETIC_ID_CLASSES, SYNTHETIC_OOD_CLASSES
from .synthetic_writer import SYNTHETIC_SPLITS, write_benchmark

__all__ = [
    "MAX_DEFAULT_MIXED_TEST",
    "SYNTHETIC_SPLITS",
    "SyntheticBenchmarkSpec",
    "default_num_mixed_test",
    "generate_synthetic_benchmark",
    "register_synthetic_benchmark",
]

logger = logging.getLogger(__name__)

#: The most images the mixed test split gets by default (beside 500 ID and 500 OOD test images in
#: the built-in draw), so that evaluating it adds little to a benchmark run.
MAX_DEFAULT_MIXED_TEST = 200

# Bump when the generated content changes: folders written by another version are regenerated.
# (Adding mixed_test needed no bump: it changed the manifest's parameters, not the other files.)
_GENERATOR_VERSION = 2
_OWNED_ENTRIES = {*SYNTHETIC_SPLITS, "annotations", MANIFEST}
_REGENERATE_HINT = (
    "The synthetic benchmark is generated on first use; delete {} to generate it again."
)


def default_num_mixed_test(num_ood_test: int) -> int:
    """The default size of the mixed test split: that of the OOD test split, at most
    ``MAX_DEFAULT_MIXED_TEST`` (so 200 for the built-in draw, 6 for a draw of 6 OOD images)."""
    return min(num_ood_test, MAX_DEFAULT_MIXED_TEST)


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
        num_mixed_test (int or None): images in the mixed (open-set) test split (>= 1); None
            (the default) means :func:`default_num_mixed_test` of ``num_ood_test``, which the
            spec then holds (last field, so that positional arguments keep their meaning).

    Raises:
        ValueError: naming the first field that is not an integer or is below its minimum.
    """

    num_train: int = 400
    num_id_test: int = 500
    num_ood_test: int = 500
    image_size: int = 128
    seed: int = 0
    num_mixed_test: Optional[int] = None

    def __post_init__(self) -> None:
        # With an invalid num_ood_test, num_mixed_test stays None: the check names num_ood_test,
        # an earlier field, first.
        if self.num_mixed_test is None and isinstance(self.num_ood_test, numbers.Integral):
            object.__setattr__(self, "num_mixed_test", default_num_mixed_test(self.num_ood_test))
        check_integer_fields(self, {"image_size": MIN_IMAGE_SIZE, "seed": 0})

    def as_dict(self) -> Dict[str, int]:
        """The parameters by name, in field order, as recorded in the manifest."""
        return dataclasses.asdict(self)

    def split_sizes(self) -> Dict[str, int]:
        """Number of images per split, keyed and ordered as ``SYNTHETIC_SPLITS``."""
        counts = (self.num_train, self.num_id_test, self.num_ood_test, self.num_mixed_test)
        return dict(zip(SYNTHETIC_SPLITS, counts))


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
        spec (SyntheticBenchmarkSpec): generation parameters (400 / 500 / 500 / 200 images of
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
    * ``{prefix}_mixed_test``: open-set set registered by :func:`register_open_set_dataset`
      (``evaluator_type="open_set"``, ``thing_classes`` = ``SYNTHETIC_ID_CLASSES`` + "unknown";
      an unknown object's ``category_id`` is 3).

    Args:
        root (str): benchmark folder, normally ``$DETECTRON2_DATASETS/synthetic``.
        name_prefix (str): prefix of the dataset names.
        spec (SyntheticBenchmarkSpec): generation parameters.

    Returns:
        dict[str, str]: split (``SYNTHETIC_SPLITS``) -> registered dataset name.
    """
    paths = _benchmark_paths(root)
    names = {split: f"{name_prefix}_{split}" for split in SYNTHETIC_SPLITS}
    for split, name in names.items():
        if name in DatasetCatalog:
            continue
        image_root, json_file = paths[f"{split}_images"], paths[f"{split}_json"]
        loader = functools.partial(_load_split, name, split, paths["root"], spec)
        _register_split(name, split, image_root, json_file, loader)
    logger.debug("Synthetic benchmark registered under %s as %s.", root, sorted(names.values()))
    return names


def _register_split(
    name: str, split: str, image_root: str, json_file: str, loader: Callable[[], List[dict]]
) -> None:
    """Register one split under ``name`` with the metadata its kind of set needs.

    Args:
        name (str): dataset name.
        split (str): one of ``SYNTHETIC_SPLITS``.
        image_root (str): folder of its images.
        json_file (str): its COCO file.
        loader (Callable[[], list[dict]]): loads its dataset dicts (generating the folder first).
    """
    id_classes = list(SYNTHETIC_ID_CLASSES)
    if split == "ood_test":
        register_ood_dataset(name, image_root, json_file, id_classes=id_classes, loader=loader)
    elif split == "mixed_test":
        register_open_set_dataset(name, image_root, json_file, id_classes=id_classes, loader=loader)
    else:
        DatasetCatalog.register(name, loader)
        MetadataCatalog.get(name).set(
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            id_dataset="synthetic",
            id_classes=id_classes,
            thing_classes=id_classes,
        )


def _load_split(name: str, split: str, root: str, spec: SyntheticBenchmarkSpec) -> List[dict]:
    """Load one split of the benchmark, generating the benchmark first if needed.

    Args:
        name (str): registered dataset name.
        split (str): one of ``SYNTHETIC_SPLITS``.
        root (str): benchmark folder.
        spec (SyntheticBenchmarkSpec): generation parameters.

    Returns:
        list[dict]: Detectron2 dataset dicts (with box annotations for the ID splits and the
        mixed split, whose unknown objects have ``category_id`` 3; none for the OOD split).
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
        return load_ood_image_list(json_file, image_root, _REGENERATE_HINT.format(root))
    if split == "mixed_test":
        return load_open_set_json(
            json_file, image_root, SYNTHETIC_ID_CLASSES, _REGENERATE_HINT.format(root)
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
        "Generating the synthetic benchmark (%d train, %d ID test, %d OOD test, %d mixed test "
        "images of %dx%d, seed %d) under %s ...",
        sizes["train"],
        sizes["id_test"],
        sizes["ood_test"],
        sizes["mixed_test"],
        spec.image_size,
        spec.image_size,
        spec.seed,
        root,
    )
    start = time.perf_counter()
    write = functools.partial(
        write_benchmark,
        split_sizes=sizes,
        image_size=spec.image_size,
        seed=spec.seed,
        header=_manifest_header(spec),
    )
    replace_folder(root, write, _OWNED_ENTRIES, "the synthetic benchmark")
    logger.info(
        "Synthetic benchmark written under %s: %d images in %.1f s.",
        root,
        sum(sizes.values()),
        time.perf_counter() - start,
    )

