"""Fit the class statistics of the feature scores post hoc, for a detector trained elsewhere.

A model trained without feature queues (a stock Detectron2 Faster R-CNN, or a vanilla model
trained without a feature score configured) has no statistics for ``mahalanobis``,
``relative_mahalanobis`` or ``knn``. Loaded into a ``VOSROIHeads`` model of the same config with
a feature score configured, its queues are filled here from the box features of the ground-truth
boxes of the ID training images, computed as at test time (test-time resizing, the backbone, the
ROI box pooler and box head). ``tools/fit_feature_statistics.py`` wraps this.
"""

import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import detection_utils
from detectron2.layers import cat
from torch import Tensor, nn
from tqdm import tqdm

from ..core.queues import ClassFeatureQueues
from .preflight import check_class_count

__all__ = [
    "ALL_BOXES",
    "boxes_per_class_counts",
    "build_statistics_loader",
    "fitted_queues",
    "fit_feature_statistics",
    "ground_truth_box_features",
    "ground_truth_crop_features",
    "ground_truth_layer_features",
    "queue_capacity",
    "statistics_dataset_dicts",
]

logger = logging.getLogger(__name__)


def statistics_dataset_dicts(cfg: CfgNode, max_images: Optional[int] = None) -> List[Dict]:
    """The records of ``DATASETS.TRAIN`` whose ground-truth boxes the statistics are fitted on.

    Args:
        cfg (CfgNode): the config.
        max_images (int or None): use only the first this many images (None: all).

    Returns:
        list[dict]: Detectron2 dataset records (images without boxes left out).

    Raises:
        ValueError: ``DATASETS.TRAIN`` is empty, ``max_images`` < 1, a set's class count is not
            ``MODEL.ROI_HEADS.NUM_CLASSES``, or a class has fewer than 2 ground-truth boxes
            among the images used (its Gaussian cannot be fitted).
        KeyError: a set of ``DATASETS.TRAIN`` is not registered.
    """
    if not cfg.DATASETS.TRAIN:
        raise ValueError(
            "DATASETS.TRAIN is empty: name the in-distribution training set whose ground-truth "
            "boxes the statistics are fitted on, e.g. DATASETS.TRAIN \"('voc_2007_trainval',)\""
        )
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    for name in cfg.DATASETS.TRAIN:
        check_class_count(name, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=True)[:max_images]
    counts = boxes_per_class_counts(dicts, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes") or ()
    short = [
        f"{names[k] if k < len(names) else k} ({count})"
        for k, count in enumerate(counts)
        if count < 2
    ]
    if short:
        raise ValueError(
            f"Among the {len(dicts)} training images used, these classes have fewer than the 2 "
            f"ground-truth boxes a class Gaussian needs: {', '.join(short)}. Use more images "
            "(--max-images) or a training set with boxes of every class."
        )
    return dicts


def boxes_per_class_counts(dicts: Sequence[Dict], num_classes: int) -> np.ndarray:
    """Returns: (num_classes,) int64 number of non-crowd ground-truth boxes per class."""
    labels = [
        annotation["category_id"]
        for record in dicts
        for annotation in record.get("annotations", ())
        if not annotation.get("iscrowd", 0)
    ]
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


#: ``boxes_per_class`` of :func:`queue_capacity` meaning "every ground-truth box".
ALL_BOXES = 0


def queue_capacity(
    dicts: Sequence[Dict], num_classes: int, boxes_per_class: Optional[int]
) -> Optional[int]:
    """Vectors per class the fitted queues keep (``capacity`` of :func:`fit_feature_statistics`).

    Args:
        dicts (Sequence[dict]): the records the statistics are fitted on.
        num_classes (int): K.
        boxes_per_class (int or None): None keeps the model's queue sizes; :data:`ALL_BOXES`
            asks for every box (the count of the class with the most boxes); else that number.

    Returns:
        int or None: the capacity, None for the model's own.
    """
    if boxes_per_class == ALL_BOXES:
        return int(boxes_per_class_counts(dicts, num_classes).max())
    return boxes_per_class


def build_statistics_loader(cfg: CfgNode, dicts: Sequence[Dict]) -> Iterable:
    """The images of ``dicts`` with their ground-truth boxes, one per batch, resized as at
    test time (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, no flip).

    Args:
        cfg (CfgNode): the config.
        dicts (Sequence[dict]): records, e.g. of :func:`statistics_dataset_dicts`.

    Returns:
        DataLoader: batches (lists of one dict) with ``image`` and ``instances`` (``gt_boxes`` in
        the resized image's pixels, ``gt_classes``); crowd boxes are left out.
    """
    # is_train=True keeps (and resizes) the annotations; the augmentations are the test-time ones.
    mapper = DatasetMapper(
        is_train=True,
        augmentations=detection_utils.build_augmentation(cfg, is_train=False),
        image_format=cfg.INPUT.FORMAT,
    )
    return build_detection_test_loader(
        list(dicts), mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS
    )


def fitted_queues(model: nn.Module) -> Dict[str, ClassFeatureQueues]:
    """The class queues a detector keeps, by what they hold: "box features" (the box
    predictor's queues), "crop features" and "<layer> features" (one per pooled layer).

    Raises:
        ValueError: the model keeps none (the message says how to build it with them).
    """
    predictor = model.roi_heads.box_predictor
    found = {
        label: queues
        for label, queues in (
            ("box features", getattr(predictor, "queues", None)),
            ("crop features", getattr(predictor, "crop_queues", None)),
        )
        if queues is not None
    }
    layers = getattr(model.roi_heads, "layer_features", None)
    if layers is not None:
        found.update({f"{name} features": q for name, q in layers.queues.layers.items()})
    if not found:
        raise ValueError(
            "The model has no feature queues to fit: build it with MODEL.ROI_HEADS.NAME "
            "'VOSROIHeads' and a feature score in VOS.SCORE or VOS.EVAL.SCORES, e.g. "
            "VOS.EVAL.SCORES \"('energy', 'mahalanobis', 'relative_mahalanobis', 'knn')\""
        )
    return found


def _replace_with_empty_queues(model: nn.Module, capacity: Optional[int]) -> None:
    """Give every queue of :func:`fitted_queues` an empty successor of ``capacity`` vectors per
    class (None: the same capacity)."""
    predictor = model.roi_heads.box_predictor
    for name in ("queues", "crop_queues"):
        old = getattr(predictor, name, None)
        if old is not None:
            setattr(predictor, name, _fresh_queues(old, capacity or old.capacity))
    layers = getattr(model.roi_heads, "layer_features", None)
    if layers is not None:
        for name, old in layers.queues.layers.items():
            layers.queues.layers[name] = _fresh_queues(old, capacity or old.capacity)


@torch.no_grad()
def ground_truth_box_features(
    model: nn.Module, batch: List[Dict], backbone_features: Optional[Dict[str, Tensor]] = None
) -> Tuple[Tensor, Tensor]:
    """The box head's features of the ground-truth boxes of a batch, as at test time.

    Args:
        model (nn.Module): a ``GeneralizedRCNN`` with ``StandardROIHeads`` (or a subclass).
        batch (list[dict]): mapped images with ``image`` and ``instances`` (``gt_boxes`` in the
            pixels of ``image``, ``gt_classes``).
        backbone_features (dict or None): the backbone's outputs on the batch's preprocessed
            images, when the caller has them already (None: computed here).

    Returns:
        features (Tensor): (B, D) box features of the B boxes (VOS box predictors: their
            ``classifier_features``, projected with VOS.FEVER.PROJECTION_DIM), on the model's
            device.
        labels (Tensor): (B,) int64 their classes.
    """
    images = model.preprocess_image(batch)  # normalises and pads; boxes keep their pixels
    if backbone_features is None:
        backbone_features = model.backbone(images.tensor)
    heads = model.roi_heads
    instances = [item["instances"].to(images.tensor.device) for item in batch]
    pooled = heads.box_pooler(
        [backbone_features[name] for name in heads.box_in_features],
        [item.gt_boxes for item in instances],
    )
    features = heads.box_head(pooled).flatten(1)
    if hasattr(heads.box_predictor, "classifier_features"):  # VOS: what the classifier reads
        features = heads.box_predictor.classifier_features(features)
    return features, cat([item.gt_classes for item in instances]).long()


@torch.no_grad()
def ground_truth_crop_features(model: nn.Module, batch: List[Dict]) -> Optional[Tensor]:
    """The crop encoder's features of the ground-truth boxes of a batch, as at test time.

    Returns:
        Tensor or None: (B, C) crop features, boxes in the order of
        :func:`ground_truth_box_features`; None when the model has no crop encoder.
    """
    encoder = getattr(model.roi_heads, "crop_encoder", None)
    if encoder is None:
        return None
    images = model.preprocess_image(batch)
    boxes = [item["instances"].gt_boxes.tensor.to(images.tensor.device) for item in batch]
    return encoder(images.tensor, boxes)


@torch.no_grad()
def ground_truth_layer_features(
    model: nn.Module, batch: List[Dict], backbone_features: Optional[Dict[str, Tensor]] = None
) -> Optional[Dict[str, Tensor]]:
    """The ROI-pooled layer features of the ground-truth boxes of a batch, as at test time.

    Args:
        model (nn.Module): a ``GeneralizedRCNN`` with ``VOSROIHeads``.
        batch (list[dict]): as :func:`ground_truth_box_features` takes it.
        backbone_features (dict or None): as :func:`ground_truth_box_features` takes them.

    Returns:
        dict[str, Tensor] or None: layer name -> (B, C_l) features, boxes in the order of
        :func:`ground_truth_box_features`; None when the model pools no layer.
    """
    layers = getattr(model.roi_heads, "layer_features", None)
    if layers is None:
        return None
    images = model.preprocess_image(batch)
    boxes = [item["instances"].gt_boxes.tensor.to(images.tensor.device) for item in batch]
    if backbone_features is None:
        backbone_features = model.backbone(images.tensor)
    return layers(backbone_features, boxes)


def _fresh_queues(queues: ClassFeatureQueues, capacity: int) -> ClassFeatureQueues:
    """Empty queues like ``queues`` (classes, dimension, estimator, device) holding ``capacity``
    vectors per class."""
    return ClassFeatureQueues(
        queues.num_classes,
        capacity,
        queues.dim,
        eps=queues.eps,
        recompute_every=queues.recompute_every,
        covariance_estimator=queues.covariance_estimator,
    ).to(queues.features.device)


@torch.no_grad()
def fit_feature_statistics(
    model: nn.Module,
    data_loader: Iterable[List[Dict]],
    capacity: Optional[int] = None,
    progress: bool = True,
) -> Tensor:
    """Replace the feature queues' contents with the ground-truth box features of a data set.

    The box predictor's queues (and its crop queues and the layer queues, when the model has a
    crop encoder or pools layers) are replaced by empty ones, then every batch's ground-truth box
    features (:func:`ground_truth_box_features`, :func:`ground_truth_crop_features`,
    :func:`ground_truth_layer_features`) are pushed with
    their classes; a class with more boxes than the queues hold keeps its last ones. The model
    runs in eval mode and is restored to its previous mode.

    Args:
        model (nn.Module): a ``GeneralizedRCNN`` with ``VOSROIHeads`` and feature queues.
        data_loader (Iterable[list[dict]]): batches as :func:`build_statistics_loader` gives.
        capacity (int or None): vectors the new queues keep per class (the config then needs
            ``VOS.QUEUE_SIZE``, ``VOS.CROP_FEATURES.QUEUE_SIZE`` and
            ``VOS.LAYER_FEATURES.QUEUE_SIZE`` set to it to load them);
            None keeps each queue's capacity.
        progress (bool): show a tqdm progress bar over the images (of ``data_loader.dataset``).

    Returns:
        Tensor: (K,) int64 number of boxes pushed per class (kept: at most the capacity).

    Raises:
        ValueError: the model has no feature queues (:func:`fitted_queues`).
    """
    held = sum(int(queues.counts.sum()) for queues in fitted_queues(model).values())
    if held:
        logger.info("The feature queues held %d vectors; they are replaced.", held)
    _replace_with_empty_queues(model, capacity)
    queues = fitted_queues(model)
    layers = getattr(model.roi_heads, "layer_features", None)
    num_classes = model.roi_heads.box_predictor.num_classes
    pushed = torch.zeros(num_classes, dtype=torch.int64)
    dataset = getattr(data_loader, "dataset", None)
    was_training = model.training
    model.eval()
    try:
        with tqdm(
            desc="fit feature statistics",
            total=len(dataset) if dataset is not None else None,
            unit="image",
            disable=not progress,
        ) as bar:
            for batch in data_loader:
                labels = cat([item["instances"].gt_classes for item in batch]).long()
                labels = labels.to(model.device)
                maps = None  # one backbone pass serves the box and the layer features
                if "box features" in queues or layers is not None:
                    maps = model.backbone(model.preprocess_image(batch).tensor)
                if "box features" in queues:
                    features, _ = ground_truth_box_features(model, batch, maps)
                    queues["box features"].push(features, labels)
                if "crop features" in queues:
                    crops = ground_truth_crop_features(model, batch)
                    queues["crop features"].push(crops, labels)
                if layers is not None:
                    layers.queues.push(ground_truth_layer_features(model, batch, maps), labels)
                pushed += torch.bincount(labels.cpu(), minlength=num_classes)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return pushed
