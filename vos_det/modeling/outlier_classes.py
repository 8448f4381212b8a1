"""Which classes get virtual outliers in a step, and the warning naming those still waiting."""

import logging
import math
from typing import List, Optional, Sequence

import torch
from detectron2.data import MetadataCatalog

from ..core.queues import ClassFeatureQueues

logger = logging.getLogger(__name__)

__all__ = ["OutlierClasses", "training_class_names"]


def training_class_names(cfg) -> Optional[List[str]]:
    """The class names of the first training set, when it has one per class (for messages)."""
    if not cfg.DATASETS.TRAIN:
        return None
    names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes")
    return list(names) if names and len(names) == cfg.MODEL.ROI_HEADS.NUM_CLASSES else None


class OutlierClasses:
    """Picks the classes whose queues are ready for outlier synthesis.

    A class is ready once its queue holds ``min_queue_fill`` vectors (0: a full queue, and then
    only when every class is ready: the paper's rule) and at least what the synthesis needs.
    Classes still short of vectors are named in a warning, repeated every ``warning_period``
    iterations, since with ``min_queue_fill`` 0 one such class keeps the whole loss off.
    """

    def __init__(
        self,
        min_queue_fill: int,
        min_class_count: int,
        class_names: Optional[Sequence[str]] = None,
        warning_period: int = 100,
    ):
        """
        Args:
            min_queue_fill (int): ``VOS.MIN_QUEUE_FILL``.
            min_class_count (int): vectors the synthesis needs per class
                (:meth:`OutlierSynthesizer.min_class_count`).
            class_names (Sequence[str] or None): the K class names, for the warning.
            warning_period (int): iterations between two warnings.
        """
        self.min_queue_fill = min_queue_fill
        self.min_class_count = min_class_count
        self.class_names = list(class_names) if class_names is not None else None
        self.warning_period = warning_period
        self._last_warning = -math.inf

    def __call__(self, queues: ClassFeatureQueues, iteration: int) -> torch.Tensor:
        """Returns: (K,) bool, the classes to synthesise outliers for at ``iteration``."""
        needed = max(self.min_queue_fill or queues.capacity, self.min_class_count)
        ready = queues.ready_classes(needed)
        if not bool(ready.all()):
            self._warn(queues, ~ready, needed, iteration)
            if self.min_queue_fill == 0:
                return torch.zeros_like(ready)
        return ready

    def _warn(
        self, queues: ClassFeatureQueues, waiting: torch.Tensor, needed: int, iteration: int
    ) -> None:
        if iteration - self._last_warning < self.warning_period:
            return
        self._last_warning = iteration
        counts = queues.fill_counts()
        names = ", ".join(
            f"{self.class_names[k] if self.class_names else k} ({int(counts[k])}/{needed})"
            for k in waiting.nonzero()[:, 0].tolist()
        )
        consequence = (
            "the uncertainty loss stays off until every queue is full (VOS.MIN_QUEUE_FILL 0)"
            if self.min_queue_fill == 0
            else "these classes get no virtual outliers yet"
        )
        logger.warning(
            "Iteration %d, past VOS.START_ITER, but the feature queues of %s are not filled: %s. "
            "A class without training boxes never fills its queue: check the training set, or "
            "set VOS.MIN_QUEUE_FILL > 0 so that the filled classes get outliers.",
            iteration,
            names,
            consequence,
        )
