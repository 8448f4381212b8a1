"""Checks run before the first training iteration, so that a bad dataset setup fails in
seconds instead of after hours of training."""

import logging
from typing import Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..evaluation.detectron2_adapters import is_open_set_dataset, split_test_sets

__all__ = ["check_class_count", "check_datasets"]

logger = logging.getLogger(__name__)


def check_datasets(cfg: CfgNode, training: bool = True) -> None:
    """Check ``DATASETS.TRAIN`` and ``DATASETS.TEST`` as training and evaluation will use them.

    Every set must be registered and have as many classes as ``MODEL.ROI_HEADS.NUM_CLASSES``
    (when its metadata lists them); the test sets must be one ID set with any OOD sets (or ID
    sets alone), and each must load (its files present and readable).

    Args:
        cfg (CfgNode): the config.
        training (bool): check ``DATASETS.TRAIN`` too; False for an evaluation alone.

    Raises:
        KeyError: naming a set that is not registered.
        ValueError: naming the class counts that differ, or the wrong mix of test sets.
        FileNotFoundError: from a test set whose files are missing (its message names them).
    """
    train = cfg.DATASETS.TRAIN if training else ()
    _check_registered(train, "DATASETS.TRAIN")
    _check_registered(cfg.DATASETS.TEST, "DATASETS.TEST")
    for name in (*train, *cfg.DATASETS.TEST):
        check_class_count(name, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    split_test_sets(cfg.DATASETS.TEST)
    for name in cfg.DATASETS.TEST:
        logger.info("Test set %s: %d images.", name, len(DatasetCatalog.get(name)))


def _check_registered(names: Sequence[str], key: str) -> None:
    registered = set(DatasetCatalog.list())
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise KeyError(
            f"{key} names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not registered. "
            "vos_det registers its datasets when imported (datasets/README.md lists them); "
            "register your own with DatasetCatalog.register or vos_det.data.register_ood_dataset."
        )


def check_class_count(name: str, num_classes: int) -> None:
    """Raise ``ValueError`` when the registered set ``name`` lists another number of classes
    than ``num_classes`` (``MODEL.ROI_HEADS.NUM_CLASSES``); a mixed (open-set) set counts its
    ID classes, not the "unknown" it adds."""
    metadata = MetadataCatalog.get(name)
    classes = metadata.get("id_classes") if is_open_set_dataset(name) else None
    classes = classes if classes is not None else metadata.get("thing_classes")
    if classes is not None and len(classes) != num_classes:
        raise ValueError(
            f"{name} has {len(classes)} classes but MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}: "
            f"set MODEL.ROI_HEADS.NUM_CLASSES {len(classes)} (or use a dataset of "
            f"{num_classes} classes)."
        )
