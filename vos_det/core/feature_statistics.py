"""Feature-space statistics of the class feature queues, factorised once and cached (plain PyTorch).

The feature scores of :mod:`vos_det.core.scores` compare box features with what
:class:`~vos_det.core.queues.ClassFeatureQueues` holds:

- :class:`GaussianFeatureStatistics`: the class Gaussians ``N(mu_k, Sigma)`` with the shared
  covariance of the queues, and one class-agnostic Gaussian ``N(mu_0, Sigma_0)`` of all queued
  vectors, for the Mahalanobis distance (Lee et al. 2018) and the relative Mahalanobis distance
  (Ren et al. 2021);
- :class:`NormalizedFeatureBank`: the L2-normalised queued vectors, for the distance to the k-th
  nearest neighbour (Sun et al. 2022).

Building them costs a Cholesky factorisation (d^3) or a copy of the queues, so
:func:`gaussian_statistics` and :func:`normalized_feature_bank` keep one of each per queues object
(for as long as that object lives) and rebuild it only when the queues change (``queues.version``:
a push, an exact recomputation, a loaded checkpoint) or move to another device. The Gaussians are
computed in float64, the nearest-neighbour search in float32.
"""

import weakref
from typing import Callable, Dict, Hashable, Tuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .linalg import robust_cholesky
from .queues import ClassFeatureQueues

__all__ = [
    "GaussianFeatureStatistics",
    "MissingStatisticsError",
    "NormalizedFeatureBank",
    "cached_statistics",
    "gaussian_statistics",
    "normalized_feature_bank",
]


class MissingStatisticsError(ValueError):
    """A feature score read class queues that do not hold the vectors it needs yet. The message
    says what is missing; the queues' owner (the detector's box predictor, the classifier) adds
    how its queues are filled."""


class GaussianFeatureStatistics:
    """The queues' Gaussians, factorised for squared Mahalanobis distances of box features.

    * Class Gaussians ``N(mu_k, Sigma)``: ``mu_k`` the class means, ``Sigma`` the queues' shared
      covariance (:meth:`ClassFeatureQueues.covariance`: the pooled within-class covariance
      with a ridge, or shrunk by Ledoit-Wolf or OAS),
      factorised once as ``Sigma = L L^T`` (:func:`robust_cholesky`, which adds jitter only if
      Cholesky fails). Only classes holding at least 2 vectors are modelled ("ready"); the others
      are left out of every minimum over classes.
    * The class-agnostic Gaussian ``N(mu_0, Sigma_0)`` of all queued vectors: ``mu_0`` their
      mean, ``Sigma_0 = Sigma`` plus the between-class scatter / N (their total scatter / N
      plus the same ridge or shrinkage), so
      ``Sigma_0 = Sigma + U U^T`` with the columns ``u_k = sqrt(n_k / N) (mu_k - mu_0)`` (one
      per non-empty class), and Woodbury's identity gives, with ``z = L^{-1} x``,
      ``M = L^{-1} U``, ``S = I + M^T M = C C^T``::

          (x - mu_0)^T Sigma_0^{-1} (x - mu_0) = |z - z_0|^2 - |C^{-1} M^T (z - z_0)|^2.

      Only a K x K factor is added to the d x d one.

    Attributes:
        ready_classes (Tensor): (K_r,) int64 indices of the modelled classes.
    """

    def __init__(self, queues: ClassFeatureQueues):
        """
        Args:
            queues (ClassFeatureQueues): the queues; read once (this object keeps no reference).

        Raises:
            MissingStatisticsError: no class holds 2 vectors.
        """
        counts = queues.counts
        ready = counts >= 2
        if not bool(ready.any()):
            raise MissingStatisticsError(
                "The Mahalanobis scores need class statistics, but no class's feature queue holds "
                f"2 vectors (counts per class: {counts.tolist()}); the queues fill as the model "
                "trains."
            )
        self.ready_classes = ready.nonzero()[:, 0]
        means = queues.class_means()
        self._factor = robust_cholesky(queues.covariance(), eps=0.0)
        white_means = self._whiten(means[self.ready_classes].mT).mT  # (K_r, d)
        self._white_means = white_means
        self._white_means_sq = white_means.square().sum(1)

        # Class-agnostic Gaussian (Woodbury): only the parts of z that the relative distance
        # reads, mapped back to feature space so that it needs no d x d solve per box.
        total = counts.sum().double()
        present = counts > 0
        agnostic_mean = queues.class_sums.sum(0) / total
        between = (means[present] - agnostic_mean) * (counts[present] / total).sqrt()[:, None]
        white_between = self._whiten(between.mT)  # M: (d, K_p)
        white_agnostic_mean = self._whiten(agnostic_mean[:, None])[:, 0]  # z_0: (d,)
        eye = torch.eye(white_between.shape[1], dtype=means.dtype, device=means.device)
        self._woodbury_factor = torch.linalg.cholesky(eye + white_between.mT @ white_between)
        # Columns: (m_k - z_0) for the ready classes, then M; mapped by L^{-T} so that
        # x @ directions = z @ [m_k - z_0 | M].
        white_directions = torch.cat([(white_means - white_agnostic_mean).mT, white_between], dim=1)
        self._directions = torch.linalg.solve_triangular(
            self._factor.mT, white_directions, upper=True
        )
        self._class_offsets = self._white_means_sq - white_agnostic_mean.square().sum()
        self._agnostic_projection = white_agnostic_mean @ white_between  # M^T z_0: (K_p,)

    def _whiten(self, columns: Tensor) -> Tensor:
        """Returns: ``L^{-1} columns`` for (d, n) ``columns``."""
        return torch.linalg.solve_triangular(self._factor, columns, upper=False)

    def class_distances(self, features: Tensor) -> Tensor:
        """Squared Mahalanobis distances ``(x - mu_k)^T Sigma^{-1} (x - mu_k)``.

        Args:
            features (Tensor): (R, d) box features, any floating dtype.

        Returns:
            Tensor: (R, K_r) float64, one column per class of ``ready_classes``.
        """
        white = self._whiten(_as_float64(features, self._factor).mT).mT  # (R, d)
        distances = (
            white.square().sum(1, keepdim=True)
            - 2 * white @ self._white_means.mT
            + self._white_means_sq
        )
        return distances.clamp_(min=0)

    def min_class_distance(self, features: Tensor) -> Tensor:
        """Returns: (R,) float64 smallest squared Mahalanobis distance to a ready class mean."""
        return self.class_distances(features).amin(dim=1)

    def min_relative_distance(self, features: Tensor) -> Tensor:
        """Smallest relative Mahalanobis distance over the ready classes (Ren et al. 2021).

        ``min_k [D_k(x) - D_0(x)]`` with ``D_k`` the squared distance to class k's Gaussian and
        ``D_0`` the squared distance to the class-agnostic one. The ``x^T Sigma^{-1} x`` terms
        cancel, so the cost is O(d K) per box (no d x d solve), free of that cancellation.

        Args:
            features (Tensor): (R, d) box features, any floating dtype.

        Returns:
            Tensor: (R,) float64.
        """
        projections = _as_float64(features, self._factor) @ self._directions
        num_ready = self._class_offsets.shape[0]
        class_terms = self._class_offsets - 2 * projections[:, :num_ready]
        woodbury = torch.linalg.solve_triangular(
            self._woodbury_factor,
            (projections[:, num_ready:] - self._agnostic_projection).mT,
            upper=False,
        )
        return class_terms.amin(dim=1) + woodbury.square().sum(0)


class NormalizedFeatureBank:
    """All queued vectors (every class's valid entries), L2-normalised, in float32.

    The k-th neighbour search is exact, as one float32 matrix product and a top-k per batch of
    boxes: the distances are those of float64 arithmetic to about 1e-6 (unit vectors), which
    can swap only neighbours whose distances tie to that precision. Float64 would cost about
    twice as much for nothing a ranking of boxes can use.

    Attributes:
        vectors (Tensor): (N, d) float32 unit vectors (a zero vector stays zero).
    """

    def __init__(self, queues: ClassFeatureQueues):
        """
        Args:
            queues (ClassFeatureQueues): the queues; copied once (no reference is kept).
        """
        self.vectors = F.normalize(queues.queued_features().double(), dim=1).float()
        self._norms_sq = self.vectors.square().sum(1)

    def kth_neighbour_distance(self, features: Tensor, k: int) -> Tensor:
        """Euclidean distance of each L2-normalised feature to its k-th nearest bank vector.

        Args:
            features (Tensor): (R, d) box features, any floating dtype.
            k (int): which neighbour, >= 1.

        Returns:
            Tensor: (R,) float64 distances in [0, 2].

        Raises:
            ValueError: ``k`` < 1.
            MissingStatisticsError: the bank holds fewer than ``k`` vectors.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > self.vectors.shape[0]:
            raise MissingStatisticsError(
                f"The knn score needs at least k={k} queued feature vectors, but the queues hold "
                f"{self.vectors.shape[0]}; lower k, or let the queues fill (they fill as the "
                "model trains)."
            )
        unit = F.normalize(
            features.detach().to(device=self.vectors.device, dtype=torch.float64), dim=1
        ).float()
        squared = torch.addmm(self._norms_sq, unit, self.vectors.mT, alpha=-2)
        squared += unit.square().sum(1, keepdim=True)
        kth = squared.topk(k, dim=1, largest=False).values[:, -1]
        return kth.double().clamp_(min=0).sqrt_()


def _as_float64(features: Tensor, like: Tensor) -> Tensor:
    """(R, d) ``features`` as float64 on ``like``'s device, detached."""
    return features.detach().to(device=like.device, dtype=torch.float64)


_Statistics = TypeVar("_Statistics")

#: queues -> {statistics class: (cache key, statistics)}; an entry lives as long as its queues.
_CACHE: "weakref.WeakKeyDictionary[ClassFeatureQueues, Dict[type, Tuple[Hashable, object]]]" = (
    weakref.WeakKeyDictionary()
)


def cached_statistics(
    queues: ClassFeatureQueues, build: Callable[[ClassFeatureQueues], _Statistics]
) -> _Statistics:
    """``build(queues)``, rebuilt only when ``queues.version`` or the queues' device changed.

    Args:
        queues (ClassFeatureQueues): the queues the statistics describe.
        build (callable): ``queues -> statistics``, e.g. a statistics class; one cache entry per
            ``build`` and queues object.
    """
    key = (queues.version, queues.features.device)
    entries = _CACHE.setdefault(queues, {})
    entry = entries.get(build)
    if entry is None or entry[0] != key:
        entry = entries[build] = (key, build(queues))
    return entry[1]


def gaussian_statistics(queues: ClassFeatureQueues) -> GaussianFeatureStatistics:
    """The :class:`GaussianFeatureStatistics` of ``queues``' current contents (cached)."""
    return cached_statistics(queues, GaussianFeatureStatistics)


def normalized_feature_bank(queues: ClassFeatureQueues) -> NormalizedFeatureBank:
    """The :class:`NormalizedFeatureBank` of ``queues``' current contents (cached)."""
    return cached_statistics(queues, NormalizedFeatureBank)
