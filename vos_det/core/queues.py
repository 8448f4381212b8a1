"""Per-class FIFO queues of feature vectors with running Gaussian statistics (plain PyTorch).

VOS keeps the box features of the most recent foreground proposals of every class and models
each class as N(mu_k, Sigma) with one covariance shared by all classes. :class:`ClassFeatureQueues`
holds the vectors in registered buffers and keeps the class sums and the sum of outer products up
to date incrementally, so the means and the pooled covariance cost no pass over the queues.
"""

from typing import Optional

import torch
from torch import Tensor, nn

from .covariance import COVARIANCE_ESTIMATORS, ledoit_wolf_shrinkage, oas_shrinkage, shrink
from .linalg import all_finite

__all__ = ["ClassFeatureQueues"]


class ClassFeatureQueues(nn.Module):
    """Fixed-size FIFO queues of feature vectors, one per class, with running Gaussian statistics.

    All state lives in registered buffers, so it is saved in checkpoints and follows
    ``.to(device)``:

    - ``features`` (float32, [K, Q, d]): ring storage; class k's valid entries are the
      ``counts[k]`` slots ending just before ``heads[k]`` (cyclically). Slots fill from 0 and
      slots never written hold zeros.
    - ``counts`` (int64, [K]): number of valid entries per class, at most Q.
    - ``heads`` (int64, [K]): next slot to write per class.
    - ``class_sums`` (float64, [K, d]): per-class sums of the queued vectors.
    - ``outer_sum`` (float64, [d, d]): sum of ``x x^T`` over all queued vectors of all classes.
    - ``num_pushes`` (int64, scalar): number of non-empty pushes so far.
    - ``queue_shape`` (int64, [3]): (K, Q, d), so that a checkpoint says which queues it holds.

    ``version`` (a plain int, not saved) changes whenever the contents do (:meth:`push`,
    :meth:`recompute_statistics`, loading a state), so that what is derived from them (e.g. the
    factorisations of :mod:`vos_det.core.feature_statistics`) can be cached and rebuilt only then.
    Code that writes the buffers directly must call :meth:`mark_changed`.

    The statistics are updated incrementally on every push (entering vectors added, overwritten
    ones subtracted) and recomputed exactly from the queue contents every ``recompute_every``
    pushes, which bounds the accumulation of rounding errors.

    Loading a state of other queues (another K, Q or d, e.g. another ``VOS.QUEUE_SIZE``) raises
    ``ValueError`` naming both shapes: Detectron2's checkpointer skips the mismatched buffers,
    which would otherwise leave counts that describe features that were never loaded.

    Do not cast the module with ``.half()`` / ``.double()``: the buffers have fixed dtypes.
    """

    def __init__(
        self,
        num_classes: int,
        capacity: int,
        dim: int,
        eps: float = 1e-4,
        recompute_every: int = 1000,
        covariance_estimator: str = "ridge",
    ):
        """
        Args:
            num_classes (int): K, the number of classes (queues).
            capacity (int): Q, the maximum number of vectors kept per class.
            dim (int): d, the feature dimension.
            eps (float): ridge added to the diagonal of :meth:`covariance` (feature units
                squared) by the "ridge" estimator.
            recompute_every (int): recompute the statistics exactly every this many pushes.
            covariance_estimator (str): how :meth:`covariance` estimates the shared covariance,
                one of :data:`~vos_det.core.covariance.COVARIANCE_ESTIMATORS`.
        """
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("capacity", capacity),
            ("dim", dim),
            ("recompute_every", recompute_every),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        if covariance_estimator not in COVARIANCE_ESTIMATORS:
            raise ValueError(
                f"covariance_estimator must be one of {', '.join(COVARIANCE_ESTIMATORS)}, got "
                f"{covariance_estimator!r}"
            )
        self.covariance_estimator = covariance_estimator
        self.num_classes = num_classes
        self.capacity = capacity
        self.dim = dim
        self.eps = eps
        self.recompute_every = recompute_every
        self.register_buffer("features", torch.zeros(num_classes, capacity, dim))
        self.register_buffer("counts", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("heads", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("class_sums", torch.zeros(num_classes, dim, dtype=torch.float64))
        self.register_buffer("outer_sum", torch.zeros(dim, dim, dtype=torch.float64))
        self.register_buffer("num_pushes", torch.zeros((), dtype=torch.int64))
        self.register_buffer("queue_shape", torch.tensor([num_classes, capacity, dim]))
        self.version = 0

    def mark_changed(self) -> None:
        """Record that the contents changed: bumps ``version``, invalidating derived caches."""
        self.version += 1

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, capacity={self.capacity}, dim={self.dim}, "
            f"eps={self.eps}, recompute_every={self.recompute_every}, "
            f"covariance_estimator={self.covariance_estimator}"
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ):
        """Refuse the state of queues of another shape; accept states saved before ``queue_shape``."""
        ours = [prefix + name for name, _ in self.named_buffers(recurse=False)]
        saved_shape = state_dict.get(prefix + "queue_shape")
        if saved_shape is not None and saved_shape.tolist() != self.queue_shape.tolist():
            self._refuse(saved_shape.tolist(), prefix)
        if prefix + "features" not in state_dict and any(key in state_dict for key in ours):
            # A loader (Detectron2's checkpointer) dropped the features for their shape.
            self._refuse(None, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )
        if prefix + "features" in state_dict and prefix + "queue_shape" in missing_keys:
            missing_keys.remove(
                prefix + "queue_shape"
            )  # saved before the buffer existed: same shape
        self.mark_changed()

    def _refuse(self, saved_shape: Optional[list], prefix: str) -> None:
        saved = (
            "of another shape"
            if saved_shape is None
            else (
                f"with {saved_shape[0]} classes, {saved_shape[1]} vectors per class and "
                f"{saved_shape[2]}-d features"
            )
        )
        raise ValueError(
            f"The checkpoint holds feature queues ({prefix.rstrip('.')}) {saved}, but this model's "
            f"have {self.num_classes} classes, {self.capacity} vectors per class "
            f"(VOS.QUEUE_SIZE) and {self.dim}-d features (MODEL.ROI_BOX_HEAD.FC_DIM): set the "
            "model's VOS.QUEUE_SIZE, NUM_CLASSES and FC_DIM to the checkpoint's, or load a "
            "checkpoint without queues (e.g. a vanilla Detectron2 model) to start them empty."
        )

    @torch.no_grad()
    def push(self, features: Tensor, labels: Tensor) -> None:
        """Append feature vectors to their classes' queues, dropping the oldest when full.

        The result is the same as pushing the vectors one by one in order: if a class receives
        more than Q vectors, only its last Q are kept. Vectorised: no loop over boxes or classes,
        and only three scalar host synchronisations per push (label range, finiteness, recompute
        schedule).

        Args:
            features (Tensor): [N, d] float16/bfloat16/float32 feature vectors; detached and
                stored as float32.
            labels (Tensor): [N] int64 class indices in [0, K).
        """
        self._check_push_inputs(features, labels)
        if labels.numel() == 0:
            return
        x_new = features.detach().to(device=self.features.device, dtype=torch.float32)
        labels = labels.to(self.features.device)
        order = torch.argsort(labels, stable=True)
        labels, x_new = labels[order], x_new[order]
        new_counts = torch.bincount(labels, minlength=self.num_classes)
        keep, slots, winners = self._ring_positions(labels, new_counts)
        x_old = self.features[labels, slots]  # zeros where the slot was never written
        # Every write to a slot carries the same value (its winner), so the duplicate indices
        # of a class receiving more than Q vectors are well-defined on every device.
        self.features[labels, slots] = x_new[winners]
        self._update_statistics(labels, x_new, x_old, keep)
        self.counts.add_(new_counts).clamp_(max=self.capacity)
        self.heads.add_(new_counts).remainder_(self.capacity)
        self.num_pushes.add_(1)
        self.mark_changed()
        if int(self.num_pushes) % self.recompute_every == 0:
            self.recompute_statistics()

    def _check_push_inputs(self, features: Tensor, labels: Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(
                f"features must have shape [N, {self.dim}], got {tuple(features.shape)}"
            )
        if not features.is_floating_point():
            raise ValueError(f"features must be floating point, got {features.dtype}")
        if labels.dim() != 1 or labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"labels must have shape [{features.shape[0]}] to match features, "
                f"got {tuple(labels.shape)}"
            )
        if labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64, got {labels.dtype}")
        if labels.numel() == 0:
            return
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(
                f"labels out of range [0, {self.num_classes}): "
                f"min {int(labels.min())}, max {int(labels.max())}"
            )
        if not all_finite(features):
            raise ValueError("features contain NaN or Inf; they would corrupt the statistics")

    def _ring_positions(self, labels: Tensor, new_counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Where each vector of a class-sorted push goes in the ring storage.

        Args:
            labels (Tensor): [N] int64 labels sorted ascending (stable, so each class keeps its
                push order).
            new_counts (Tensor): [K] int64 number of vectors of each class in this push.

        Returns:
            keep (BoolTensor): [N] whether the vector survives the push (one of its class's last
                Q vectors).
            slots (Tensor): [N] int64 ring slot of the vector within its class's queue. Kept
                vectors of a class have distinct slots; a dropped vector shares its slot with the
                kept vector that overwrites it.
            winners (Tensor): [N] int64 index (into the sorted push) of the vector that ends up
                in ``slots[i]``; ``winners[i] == i`` for kept vectors.
        """
        starts = torch.cumsum(new_counts, 0) - new_counts
        class_counts = new_counts[labels]
        ranks = torch.arange(labels.numel(), device=labels.device) - starts[labels]
        keep = ranks >= class_counts - self.capacity
        slots = (self.heads[labels] + ranks) % self.capacity
        laps_left = torch.div(class_counts - 1 - ranks, self.capacity, rounding_mode="floor")
        winners = starts[labels] + ranks + self.capacity * laps_left
        return keep, slots, winners

    def _update_statistics(
        self, labels: Tensor, x_new: Tensor, x_old: Tensor, keep: Tensor
    ) -> None:
        """Add the entering vectors to the running statistics and subtract the leaving ones.

        Each kept vector is paired with the vector it overwrites (zero for a slot never written
        before, which therefore subtracts nothing), so one matmul over N rows covers both: with
        ``D = x_in - x_out`` and ``S = x_in + x_out``, the symmetric part of ``D^T S`` is
        ``x_in^T x_in - x_out^T x_out``.

        Args:
            labels (Tensor): [N] int64 class of each pair.
            x_new (Tensor): [N, d] float32 pushed vectors.
            x_old (Tensor): [N, d] float32 previous content of their slots.
            keep (BoolTensor): [N] whether the pushed vector survives the push; dropped vectors
                (and the slots they would overwrite) do not count.
        """
        x_in = x_new.double() * keep[:, None]
        x_out = x_old.double() * keep[:, None]
        diff = x_in - x_out
        self.class_sums.index_add_(0, labels, diff)
        half_cross = diff.mT @ (0.5 * (x_in + x_out))
        self.outer_sum.add_(half_cross).add_(half_cross.mT)

    @torch.no_grad()
    def recompute_statistics(self) -> None:
        """Recompute ``class_sums`` and ``outer_sum`` exactly (float64) from the queue contents.

        Slots never written hold zeros and contribute nothing. Loops over the K classes to bound
        the float64 working memory to one [Q, d] queue.
        """
        self.outer_sum.zero_()
        for k in range(self.num_classes):
            x = self.features[k].double()
            self.class_sums[k] = x.sum(0)
            self.outer_sum.addmm_(x.mT, x)
        self.mark_changed()

    def fill_counts(self) -> Tensor:
        """Returns: [K] int64 number of vectors held per class (a copy)."""
        return self.counts.clone()

    def ready_classes(self, min_count: Optional[int] = None) -> Tensor:
        """Which classes hold at least ``min_count`` vectors.

        Args:
            min_count (int, optional): threshold in [0, Q]; None means full (``count == Q``).

        Returns:
            BoolTensor: [K].
        """
        if min_count is None:
            min_count = self.capacity
        if not 0 <= min_count <= self.capacity:
            raise ValueError(f"min_count must be in [0, {self.capacity}], got {min_count}")
        return self.counts >= min_count

    def all_ready(self, min_count: Optional[int] = None) -> bool:
        """Whether every class holds at least ``min_count`` vectors (None: every queue is full)."""
        return bool(self.ready_classes(min_count).all())

    def class_features(self, k: int) -> Tensor:
        """The valid entries of class ``k``'s queue, oldest first.

        Returns:
            Tensor: [counts[k], d] float32 (a copy).
        """
        if not 0 <= k < self.num_classes:
            raise ValueError(f"class index must be in [0, {self.num_classes}), got {k}")
        count = int(self.counts[k])
        offsets = torch.arange(count, device=self.features.device)
        return self.features[k, (self.heads[k] - count + offsets) % self.capacity]

    def queued_features(self) -> Tensor:
        """Every class's valid entries, class by class (slots fill from 0, so class k's valid
        entries are its first ``counts[k]`` slots).

        Returns:
            Tensor: (counts.sum(), d) float32 (a copy).
        """
        slots = torch.arange(self.capacity, device=self.counts.device)
        return self.features[slots < self.counts[:, None]]

    def class_means(self) -> Tensor:
        """Returns: [K, d] float64 per-class means of the queued vectors (zero rows when empty)."""
        return self.class_sums / self.counts.clamp(min=1)[:, None]

    def covariance(self) -> Tensor:
        """The shared covariance of the class Gaussians, by ``covariance_estimator``.

        All start from the pooled within-class sample covariance
        ``S = (sum_i x_i x_i^T - sum_k n_k mu_k mu_k^T) / sum_k n_k`` of the running statistics
        (every vector centred on its own class mean, divided by the total number of queued
        vectors; symmetrised):

        - "ridge": ``S + eps * I``;
        - "ledoit_wolf", "oas": ``S`` shrunk towards ``trace(S) / d * I``
          (:mod:`vos_det.core.covariance`); Ledoit-Wolf reads the queued vectors once more
          (O(N d)) for the fourth moment of their norms.

        With all queues empty it is ``eps * I``.

        Returns:
            Tensor: [d, d] float64, in feature units squared.
        """
        counts = self.counts.double()
        total = int(self.counts.sum())
        scaled_sums = self.class_sums * counts.clamp(min=1).rsqrt()[:, None]
        scatter = torch.addmm(self.outer_sum, scaled_sums.mT, scaled_sums, alpha=-1)
        cov = scatter.add(scatter.mT).div_(2 * max(total, 1))
        if self.covariance_estimator == "ridge" or total == 0:
            cov.diagonal().add_(self.eps)
            return cov
        if self.covariance_estimator == "oas":
            return shrink(cov, oas_shrinkage(cov, total))
        return shrink(cov, ledoit_wolf_shrinkage(cov, total, self._sum_centred_norm4()))

    def _sum_centred_norm4(self) -> Tensor:
        """Returns: scalar float64 ``sum_i |x_i - mu_(class of i)|^4`` over the queued vectors."""
        means = self.class_means()
        total = torch.zeros((), dtype=torch.float64, device=means.device)
        for k in range(self.num_classes):  # one [Q, d] float64 queue at a time
            centred = self.class_features(k).double() - means[k]
            total += centred.square().sum(1).square().sum()
        return total
