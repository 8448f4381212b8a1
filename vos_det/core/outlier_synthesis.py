"""Where virtual outliers come from: the paper's Gaussian fringe, or the queues' own boundary
(plain PyTorch).

``"gaussian"`` (VOS): the lowest-likelihood of many samples from each class's Gaussian (class
mean, shared covariance), :func:`vos_det.core.virtual_outliers.sample_virtual_outliers`.

``"boundary"`` (non-parametric, after NPOS, Tao et al. 2023): no distribution is assumed.
The queued features of a class with the largest distance to their k-th nearest class mate are
its boundary; candidates are drawn around them with isotropic Gaussian noise, and those farthest
from every queued feature (k-th nearest neighbour, all classes) are kept
(:func:`sample_boundary_outliers`).
"""

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from .queues import ClassFeatureQueues
from .virtual_outliers import sample_virtual_outliers

__all__ = ["SYNTHESIS_METHODS", "OutlierSynthesizer", "sample_boundary_outliers"]

#: The values of ``VOS.SYNTHESIS``.
SYNTHESIS_METHODS = ("gaussian", "boundary")


def _kth_neighbour_distance(points: Tensor, bank: Tensor, k: int, skip_self: bool) -> Tensor:
    """[N] Euclidean distance of each of [N, D] ``points`` to its k-th nearest row of [M, D]
    ``bank`` (the (k+1)-th with ``skip_self``, when the points are rows of the bank)."""
    rank = k + 1 if skip_self else k
    if bank.shape[0] < rank:
        raise ValueError(f"need at least {rank} queued features for k={k}, got {bank.shape[0]}")
    return torch.cdist(points, bank).kthvalue(rank, dim=1).values


def sample_boundary_outliers(
    class_features: Sequence[Tensor],
    num_candidates: int,
    num_select: int,
    k: int,
    num_boundary: int,
    noise_scale: float,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Non-parametric outliers around each class's boundary features.

    For each class c with features X_c (n_c rows): r_i = distance of x_i to its k-th nearest
    other row of X_c; the ``num_boundary`` rows of largest r_i are the boundary; ``num_candidates``
    candidates ``b + sigma * eps`` cycle over the boundary rows b, with eps ~ N(0, I) and
    ``sigma = noise_scale * mean(r) / sqrt(D)`` (so an offset's length is about ``noise_scale``
    typical k-NN radii, whatever the feature scale); the ``num_select`` candidates farthest from
    their k-th nearest feature of all classes are kept.

    Args:
        class_features (Sequence[Tensor]): per class, [n_c, D] queued features, n_c > k.
        num_candidates (int): candidates per class (>= num_select).
        num_select (int): outliers kept per class.
        k (int): the neighbour rank of both distances (>= 1).
        num_boundary (int): boundary features per class (>= 1; fewer when a class has fewer).
        noise_scale (float): noise length in units of the class's mean k-NN radius (> 0).
        generator (torch.Generator, optional): source of the noise, on the features' device.

    Returns:
        Tensor: [C * num_select, D] outliers (C classes, class 0's first), float32.
    """
    if not class_features:
        raise ValueError("sample_boundary_outliers needs the features of at least one class")
    if not 1 <= num_select <= num_candidates or k < 1 or num_boundary < 1 or noise_scale <= 0:
        raise ValueError(
            "need 1 <= num_select <= num_candidates, k >= 1, num_boundary >= 1, noise_scale > 0; "
            f"got {num_select}, {num_candidates}, {k}, {num_boundary}, {noise_scale}"
        )
    features = [x.float() for x in class_features]
    bank = torch.cat(features)
    dim = bank.shape[1]
    outliers = []
    for x in features:
        radii = _kth_neighbour_distance(x, x, k, skip_self=True)
        boundary = x[radii.topk(min(num_boundary, x.shape[0])).indices]
        sigma = noise_scale * radii.mean() / math.sqrt(dim)
        noise = torch.randn(
            num_candidates, dim, generator=generator, dtype=x.dtype, device=x.device
        )
        rows = torch.arange(num_candidates, device=x.device) % boundary.shape[0]
        candidates = boundary[rows] + sigma * noise
        distances = _kth_neighbour_distance(candidates, bank, k, skip_self=False)
        outliers.append(candidates[distances.topk(num_select).indices])
    return torch.cat(outliers)


class OutlierSynthesizer:
    """Virtual outliers for the classes of a :class:`ClassFeatureQueues` that are ready.

    Args:
        method (str): one of :data:`SYNTHESIS_METHODS` (``VOS.SYNTHESIS``).
        num_candidates (int): candidates per class (``VOS.NUM_CANDIDATES``).
        num_select (int): outliers per class and call (``VOS.NUM_SELECT``).
        boundary_k (int): ``k`` of :func:`sample_boundary_outliers` (``VOS.BOUNDARY.K``).
        num_boundary (int): ``VOS.BOUNDARY.NUM_BOUNDARY``.
        noise_scale (float): ``VOS.BOUNDARY.NOISE_SCALE``.
    """

    def __init__(
        self,
        method: str,
        num_candidates: int,
        num_select: int,
        boundary_k: int = 10,
        num_boundary: int = 20,
        noise_scale: float = 1.0,
    ):
        if method not in SYNTHESIS_METHODS:
            raise ValueError(
                f"method must be one of {', '.join(SYNTHESIS_METHODS)}, got {method!r}"
            )
        self.method = method
        self.num_candidates = num_candidates
        self.num_select = num_select
        self.boundary_k = boundary_k
        self.num_boundary = num_boundary
        self.noise_scale = noise_scale

    def min_class_count(self) -> int:
        """Vectors a class queue must hold before this synthesis can use it."""
        return self.boundary_k + 1 if self.method == "boundary" else 1

    def __call__(self, queues: ClassFeatureQueues, classes: Tensor) -> Tensor:
        """
        Args:
            queues (ClassFeatureQueues): the feature queues.
            classes (Tensor): (K,) bool, the classes to synthesise outliers for (at least one,
                each holding :meth:`min_class_count` vectors).

        Returns:
            Tensor: [C * num_select, D] float32 outliers, C = ``classes.sum()``.
        """
        if self.method == "gaussian":
            # covariance() already holds the COV_EPS ridge: no second one.
            outliers, _ = sample_virtual_outliers(
                queues.class_means()[classes],
                queues.covariance(),
                self.num_candidates,
                self.num_select,
                eps=0.0,
            )
            return outliers
        return sample_boundary_outliers(
            [queues.class_features(k) for k in classes.nonzero()[:, 0].tolist()],
            self.num_candidates,
            self.num_select,
            self.boundary_k,
            self.num_boundary,
            self.noise_scale,
        )
