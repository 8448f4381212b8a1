"""Datasets of the VOS benchmarks; importing this package registers them with Detectron2."""

from .builtin import register_all_vos_datasets  # importing builtin registers the datasets
from .ood_datasets import ID_CLASSES, register_ood_dataset
from ..core.shape_scenes import SYNTHETIC_ID_CLASSES, SYNTHETIC_OOD_CLASSES
from .synthetic import (
    SyntheticBenchmarkSpec,
    generate_synthetic_benchmark,
    register_synthetic_benchmark,
)

__all__ = [
    "ID_CLASSES",
    "SYNTHETIC_ID_CLASSES",
    "SYNTHETIC_OOD_CLASSES",
    "SyntheticBenchmarkSpec",
    "generate_synthetic_benchmark",
    "register_all_vos_datasets",
    "register_ood_dataset",
    "register_synthetic_benchmark",
]
