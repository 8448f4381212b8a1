"""Registration of the VOS benchmark datasets under ``$DETECTRON2_DATASETS``.

Importing this module registers every dataset below, the way ``detectron2.data.datasets.builtin``
does. Registration never touches the filesystem: missing files are reported when a dataset is
loaded, with the path that was expected and the command that creates it (see datasets/README.md).

ID (training / test) sets:

* ``voc_2007_trainval``, ``voc_2012_trainval``, ``voc_2007_test``: registered by Detectron2
  itself; only their metadata is completed here (``is_ood=False``, ``id_dataset="voc"``).
* ``bdd_train``, ``bdd_val``: BDD100K in COCO format, written by datasets/prepare_bdd100k.py.

OOD sets (``is_ood=True``, ``evaluator_type="ood"``, ``thing_classes`` = the ID classes):

* ``coco_ood_val`` / ``coco_ood_val_bdd``: COCO val2017 images with no object of a VOC / BDD
  class, written by datasets/prepare_coco_ood.py.
* ``openimages_ood_val`` / ``openimages_ood_val_bdd``: OpenImages images with no object of a
  VOC / BDD class, written by datasets/prepare_openimages_ood.py.
"""

import logging
import os
from dataclasses import dataclass
from typing import List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json

from .ood_datasets import (
    ID_CLASSES,
    default_datasets_root,
    explain_json_errors,
    register_ood_dataset,
    require_path,
)

__all__ = ["register_all_vos_datasets"]

logger = logging.getLogger(__name__)

_VOC_SPLITS = ("voc_2007_trainval", "voc_2012_trainval", "voc_2007_test")


@dataclass(frozen=True)
class _Split:
    """A dataset stored under the datasets root.

    Attributes:
        name (str): registered dataset name.
        benchmark (str): key of ``ID_CLASSES`` (the ID classes of the benchmark).
        image_root (str): image folder, relative to the root.
        json_file (str): COCO-format annotation file, relative to the root.
        prepare_command (str): command creating ``json_file``; "{root}" stands for the root.
    """

    name: str
    benchmark: str
    image_root: str
    json_file: str
    prepare_command: str

    def image_path(self, root: str) -> str:
        """The image folder under ``root``."""
        return os.path.join(root, self.image_root)

    def json_path(self, root: str) -> str:
        """The annotation file under ``root``."""
        return os.path.join(root, self.json_file)

    def missing_hint(self, root: str) -> str:
        """Sentence telling the user how to create this split's files under ``root``."""
        command = self.prepare_command.format(root=root)
        return f"Get the raw data as datasets/README.md describes, then run: {command}"


_BDD_COMMAND = "python datasets/prepare_bdd100k.py --split {split} --bdd-root {{root}}/bdd100k"
_ID_SPLITS = [
    _Split(
        name=f"bdd_{split}",
        benchmark="bdd",
        image_root=f"bdd100k/images/100k/{split}",
        json_file=f"bdd100k/annotations/bdd100k_det_{split}_coco.json",
        prepare_command=_BDD_COMMAND.format(split=split),
    )
    for split in ("train", "val")
]

_COCO_COMMAND = (
    "python datasets/prepare_coco_ood.py --benchmark {benchmark} --coco-root {{root}}/coco"
)
_OPENIMAGES_COMMAND = (
    "python datasets/prepare_openimages_ood.py --benchmark {benchmark} "
    "--openimages-root {{root}}/OpenImages"
)
_OOD_SPLITS = [
    _Split(
        name=f"coco_ood_val{suffix}",
        benchmark=benchmark,
        image_root="coco/val2017",
        json_file=f"coco/annotations/instances_val2017_ood_wrt_{benchmark}.json",
        prepare_command=_COCO_COMMAND.format(benchmark=benchmark),
    )
    for benchmark, suffix in (("voc", ""), ("bdd", "_bdd"))
] + [
    _Split(
        name=f"openimages_ood_val{suffix}",
        benchmark=benchmark,
        image_root="OpenImages/images",
        json_file=f"OpenImages/openimages_ood_wrt_{benchmark}.json",
        prepare_command=_OPENIMAGES_COMMAND.format(benchmark=benchmark),
    )
    for benchmark, suffix in (("voc", ""), ("bdd", "_bdd"))
]


def register_all_vos_datasets(root: str) -> None:
    """Register the VOS benchmark datasets stored under ``root``; skip names already registered.

    Args:
        root (str): datasets root, normally ``$DETECTRON2_DATASETS`` (default "datasets").
    """
    _complete_voc_metadata()
    for split in _ID_SPLITS:
        if split.name not in DatasetCatalog:
            _register_coco_id_split(split, root)
    for split in _OOD_SPLITS:
        if split.name not in DatasetCatalog:
            register_ood_dataset(
                split.name,
                split.image_path(root),
                split.json_path(root),
                id_classes=split.benchmark,
                missing_hint=split.missing_hint(root),
            )
    logger.debug("VOS datasets registered under %s.", root)


def _complete_voc_metadata() -> None:
    """Mark the PASCAL VOC splits (registered by Detectron2's builtin module) as the VOC ID sets."""
    for name in _VOC_SPLITS:
        MetadataCatalog.get(name).set(
            is_ood=False, id_dataset="voc", id_classes=list(ID_CLASSES["voc"])
        )


def _register_coco_id_split(split: _Split, root: str) -> None:
    """Register an ID split stored in COCO format (boxes of the benchmark's classes).

    Args:
        split (_Split): the split.
        root (str): datasets root.
    """
    DatasetCatalog.register(
        split.name, lambda split=split, root=root: _load_coco_id_split(split, root)
    )
    MetadataCatalog.get(split.name).set(
        json_file=split.json_path(root),
        image_root=split.image_path(root),
        evaluator_type="coco",
        is_ood=False,
        id_dataset=split.benchmark,
        id_classes=list(ID_CLASSES[split.benchmark]),
        thing_classes=list(ID_CLASSES[split.benchmark]),
    )


def _load_coco_id_split(split: _Split, root: str) -> List[dict]:
    """Load an ID split, checking first that its files exist and its JSON parses.

    Args:
        split (_Split): the split.
        root (str): datasets root.

    Returns:
        list[dict]: Detectron2 dataset dicts with box annotations.
    """
    hint = split.missing_hint(root)
    require_path(split.image_path(root), "folder", hint)
    with explain_json_errors(split.json_path(root), hint):
        return load_coco_json(split.json_path(root), split.image_path(root), split.name)


register_all_vos_datasets(default_datasets_root())
