"""Datasets of the VOS benchmarks; importing this package registers them with Detectron2."""

from .builtin import register_all_vos_datasets  # importing builtin registers the datasets
from .ood_datasets import ID_CLASSES, register_ood_dataset

__all__ = ["ID_CLASSES", "register_all_vos_datasets", "register_ood_dataset"]
