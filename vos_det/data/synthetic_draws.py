"""Draws of the synthetic benchmark other than the built-in one, for the tools that train on it.

A draw is a :class:`~vos_det.data.synthetic.SyntheticBenchmarkSpec` (image counts and data seed;
the images depend on nothing else). The built-in draw (default spec, data seed 0, the "test
draw") is registered by ``import vos_det`` as ``synthetic_*`` under
``$DETECTRON2_DATASETS/synthetic``. Any other draw gets its own dataset names and folder, both
named by :func:`synthetic_draw_name` (e.g. ``synthetic_seed1``), so that draws never mix.

Tools that train in spawned processes pass the returned setup callable to
:func:`vos_det.engine.train_and_evaluate_all`: a fresh process only knows the built-in datasets.
"""

import argparse
import functools
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..core.files import default_datasets_root
from .synthetic import (
    MAX_DEFAULT_MIXED_TEST,
    SYNTHETIC_SPLITS,
    SyntheticBenchmarkSpec,
    default_num_mixed_test,
    register_synthetic_benchmark,
)

__all__ = [
    "add_draw_arguments",
    "dataset_overrides",
    "register_synthetic_draw",
    "synthetic_benchmark_setup",
    "synthetic_draw_name",
]

#: The spec fields that ``images`` of :func:`synthetic_benchmark_setup` give, in order.
_COUNT_FIELDS = ("num_train", "num_id_test", "num_ood_test", "num_mixed_test")


def synthetic_draw_name(spec: SyntheticBenchmarkSpec) -> str:
    """The name of a draw: "synthetic", then the image counts when they are not the default
    ones, then the image size and the data seed when they are not the default ones (e.g.
    "synthetic_8_4_4_seed1").

    The counts are those of train, ID test and OOD test, and of mixed test only when it is not
    its default (:func:`~vos_det.data.synthetic.default_num_mixed_test` of the OOD count), so
    that the names of draws made before the mixed split existed stay the same (e.g.
    "synthetic_8_4_4" for 8 / 4 / 4 / 4 images, "synthetic_8_4_4_2" for 8 / 4 / 4 / 2).

    Args:
        spec (SyntheticBenchmarkSpec): the draw.

    Returns:
        str: the folder name under ``$DETECTRON2_DATASETS`` and the dataset name prefix.
    """
    parts = ["synthetic"]
    counts = _named_counts(spec)
    if counts != _named_counts(SyntheticBenchmarkSpec()):
        parts += map(str, counts)
    if spec.image_size != SyntheticBenchmarkSpec.image_size:
        parts.append(f"{spec.image_size}px")
    if spec.seed:
        parts.append(f"seed{spec.seed}")
    return "_".join(parts)


def _named_counts(spec: SyntheticBenchmarkSpec) -> List[int]:
    """The image counts that name a draw: train, ID test, OOD test, and mixed test when it is
    not its default."""
    counts = [spec.num_train, spec.num_id_test, spec.num_ood_test]
    if spec.num_mixed_test != default_num_mixed_test(spec.num_ood_test):
        counts.append(spec.num_mixed_test)
    return counts


def register_synthetic_draw(
    root: str, name_prefix: str, spec: SyntheticBenchmarkSpec
) -> Dict[str, str]:
    """:func:`register_synthetic_benchmark`, first removing any dataset registered under the
    same names (which may point at another folder or draw).

    Returns:
        dict[str, str]: split -> registered dataset name.
    """
    for split in SYNTHETIC_SPLITS:
        for catalog in (DatasetCatalog, MetadataCatalog):
            if f"{name_prefix}_{split}" in catalog:
                catalog.remove(f"{name_prefix}_{split}")
    return register_synthetic_benchmark(root, name_prefix, spec)


def synthetic_benchmark_setup(
    images: Optional[Sequence[int]] = None,
    data_root: Optional[str] = None,
    data_seed: int = 0,
    name_prefix: Optional[str] = None,
) -> Tuple[Dict[str, str], Optional[Callable[[], Dict[str, str]]]]:
    """Register a draw of the synthetic benchmark here; return its names and what registers it
    in a fresh process.

    With the defaults: the built-in ``synthetic_*`` datasets (registered by ``import vos_det``).
    Otherwise the draw of ``images`` = [train, ID test, OOD test] or [train, ID test, OOD test,
    mixed test] images (default sizes when None; without a mixed count, the mixed split gets
    :func:`~vos_det.data.synthetic.default_num_mixed_test` of the OOD count) and data seed
    ``data_seed``, registered as ``<name_prefix>_*`` under ``data_root`` (default
    ``$DETECTRON2_DATASETS/<draw name>``); it is generated when first loaded.

    Args:
        images (Sequence[int] or None): numbers of train, ID test, OOD test and optionally
            mixed test images.
        data_root (str or None): folder of the draw.
        data_seed (int): seed of the draw (>= 0).
        name_prefix (str or None): dataset name prefix of a draw other than the built-in one;
            default :func:`synthetic_draw_name`.

    Returns:
        tuple: (dict split -> dataset name, picklable setup callable or None for the built-in
        draw).

    Raises:
        ValueError: naming the parameter, for image counts or a seed out of range, or for
            ``images`` holding other than 3 or 4 counts.
    """
    if images is not None and len(images) not in (3, 4):
        raise ValueError(
            "images must hold 3 or 4 counts (train, ID test, OOD test[, mixed test]), got "
            f"{list(images)}."
        )
    sizes = dict(zip(_COUNT_FIELDS, images or ()))
    spec = SyntheticBenchmarkSpec(**sizes, seed=data_seed)
    if spec == SyntheticBenchmarkSpec() and data_root is None:
        return {split: f"synthetic_{split}" for split in SYNTHETIC_SPLITS}, None
    name = synthetic_draw_name(spec)
    data_root = data_root or os.path.join(default_datasets_root(), name)
    setup = functools.partial(register_synthetic_draw, data_root, name_prefix or name, spec)
    return setup(), setup


def dataset_overrides(names: Dict[str, str]) -> List[object]:
    """``KEY VALUE`` config overrides training on a draw's train split and testing on its ID,
    OOD and mixed test splits.

    Args:
        names (dict[str, str]): split -> dataset name, from :func:`synthetic_benchmark_setup`.

    Returns:
        list: for ``cfg.merge_from_list``.
    """
    return [
        "DATASETS.TRAIN",
        (names["train"],),
        "DATASETS.TEST",
        (names["id_test"], names["ood_test"], names["mixed_test"]),
    ]


def add_draw_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--images TRAIN ID_TEST OOD_TEST`` and ``--data-root`` to a tool's command line, the
    arguments ``images`` and ``data_root`` of :func:`synthetic_benchmark_setup`."""
    parser.add_argument(
        "--images",
        type=int,
        nargs=3,
        metavar=("TRAIN", "ID_TEST", "OOD_TEST"),
        help="a synthetic benchmark with these numbers of images instead of the default sizes "
        f"(its mixed test split gets as many images as OOD_TEST, at most {MAX_DEFAULT_MIXED_TEST})",
    )
    parser.add_argument(
        "--data-root",
        help="folder of that benchmark (default: $DETECTRON2_DATASETS/<draw name>, e.g. "
        "synthetic_<TRAIN>_<ID_TEST>_<OOD_TEST>)",
    )
