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
from .synthetic import SYNTHETIC_SPLITS, SyntheticBenchmarkSpec, register_synthetic_benchmark

__all__ = [
    "add_draw_arguments",
    "dataset_overrides",
    "register_synthetic_draw",
    "synthetic_benchmark_setup",
    "synthetic_draw_name",
]


def synthetic_draw_name(spec: SyntheticBenchmarkSpec) -> str:
    """The name of a draw: "synthetic", then the image counts when they are not the default
    ones, then the data seed when it is not 0 (e.g. "synthetic_8_4_4_seed1").

    Args:
        spec (SyntheticBenchmarkSpec): the draw.

    Returns:
        str: the folder name under ``$DETECTRON2_DATASETS`` and the dataset name prefix.
    """
    parts = ["synthetic"]
    sizes = list(spec.split_sizes().values())
    if sizes != list(SyntheticBenchmarkSpec().split_sizes().values()):
        parts += map(str, sizes)
    if spec.image_size != SyntheticBenchmarkSpec.image_size:
        parts.append(f"{spec.image_size}px")
    if spec.seed:
        parts.append(f"seed{spec.seed}")
    return "_".join(parts)


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
    Otherwise the draw of ``images`` = [train, ID test, OOD test] images (default sizes when
    None) and data seed ``data_seed``, registered as ``<name_prefix>_*`` under ``data_root``
    (default ``$DETECTRON2_DATASETS/<draw name>``); it is generated when first loaded.

    Args:
        images (Sequence[int] or None): numbers of train, ID test and OOD test images.
        data_root (str or None): folder of the draw.
        data_seed (int): seed of the draw (>= 0).
        name_prefix (str or None): dataset name prefix of a draw other than the built-in one;
            default :func:`synthetic_draw_name`.

    Returns:
        tuple: (dict split -> dataset name, picklable setup callable or None for the built-in
        draw).

    Raises:
        ValueError: naming the parameter, for image counts or a seed out of range.
    """
    sizes = dict(zip(("num_train", "num_id_test", "num_ood_test"), images or ()))
    spec = SyntheticBenchmarkSpec(**sizes, seed=data_seed)
    if spec == SyntheticBenchmarkSpec() and data_root is None:
        return {split: f"synthetic_{split}" for split in SYNTHETIC_SPLITS}, None
    name = synthetic_draw_name(spec)
    data_root = data_root or os.path.join(default_datasets_root(), name)
    setup = functools.partial(register_synthetic_draw, data_root, name_prefix or name, spec)
    return setup(), setup


def dataset_overrides(names: Dict[str, str]) -> List[object]:
    """``KEY VALUE`` config overrides training on a draw's train split and testing on its ID and
    OOD test splits.

    Args:
        names (dict[str, str]): split -> dataset name, from :func:`synthetic_benchmark_setup`.

    Returns:
        list: for ``cfg.merge_from_list``.
    """
    return [
        "DATASETS.TRAIN",
        (names["train"],),
        "DATASETS.TEST",
        (names["id_test"], names["ood_test"]),
    ]


def add_draw_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--images TRAIN ID_TEST OOD_TEST`` and ``--data-root`` to a tool's command line, the
    arguments ``images`` and ``data_root`` of :func:`synthetic_benchmark_setup`."""
    parser.add_argument(
        "--images",
        type=int,
        nargs=3,
        metavar=("TRAIN", "ID_TEST", "OOD_TEST"),
        help="a synthetic benchmark with these numbers of images instead of the default sizes",
    )
    parser.add_argument(
        "--data-root",
        help="folder of that benchmark (default: $DETECTRON2_DATASETS/<draw name>, e.g. "
        "synthetic_<TRAIN>_<ID_TEST>_<OOD_TEST>)",
    )
