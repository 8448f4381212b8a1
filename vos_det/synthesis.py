"""Class feature queues, the shared Gaussian fit and virtual-outlier sampling (plain PyTorch).

VOS models the ROI features of every class k as N(mu_k, Sigma) with one covariance shared by all
classes, and synthesises "virtual outliers" at the fringe of each class: among ``num_candidates``
samples of N(mu_k, Sigma) it keeps the ``num_select`` with the lowest likelihood.

The density of N(mu, Sigma) at ``mu + L z`` (``L L^T = Sigma``) decreases with ``r = |z|`` alone,
and for ``z ~ N(0, I_d)`` the radius ``r`` (chi distribution, d degrees of freedom) is independent
of the direction ``z / r`` (uniform on the sphere). The ``s`` lowest-likelihood of ``N``
candidates therefore have the law of the ``s`` largest of ``N`` iid chi(d) radii, each paired with
an independent uniform direction. :func:`sample_virtual_outliers` draws those top order statistics
directly, in O(s * d) per class after one Cholesky factorisation shared by all classes, instead of
the reference's O(N * d^2). :func:`sample_virtual_outliers_bruteforce` is the reference algorithm,
kept as the oracle for tests and benchmarks.
"""

import logging
import math
from typing import Optional

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "ClassFeatureQueues",
    "chi2_upper_quantile",
    "robust_cholesky",
    "sample_virtual_outliers",
    "sample_virtual_outliers_bruteforce",
]

# Newton iterations of the inverse chi-square survival function. From the initial guess the
# iterates stop improving after at most 5 steps for 1 <= dof <= 4096 and q <= 0.99, at ~1e-10
# relative error or better (the accuracy of torch.special.gammaincc near x = dof / 2).
_NEWTON_STEPS = 6
# Smallest upper-tail probability resolved by the inverse chi-square survival function; smaller
# ones are clamped (Q(a, x) still has headroom above float64's underflow there).
_LOG_Q_MIN = math.log(1e-300)
# The brute-force sampler draws the candidates of this many coordinates at a time.
_BRUTEFORCE_CHUNK_ELEMENTS = 2**24


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

    The statistics are updated incrementally on every push (entering vectors added, overwritten
    ones subtracted) and recomputed exactly from the queue contents every ``recompute_every``
    pushes, which bounds the accumulation of rounding errors.

    Do not cast the module with ``.half()`` / ``.double()``: the buffers have fixed dtypes.
    """

    def __init__(
        self,
        num_classes: int,
        capacity: int,
        dim: int,
        eps: float = 1e-4,
        recompute_every: int = 1000,
    ):
        """
        Args:
            num_classes (int): K, the number of classes (queues).
            capacity (int): Q, the maximum number of vectors kept per class.
            dim (int): d, the feature dimension.
            eps (float): ridge added to the diagonal of :meth:`covariance` (feature units squared).
            recompute_every (int): recompute the statistics exactly every this many pushes.
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

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, capacity={self.capacity}, dim={self.dim}, "
            f"eps={self.eps}, recompute_every={self.recompute_every}"
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
        if not _all_finite(features):
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

    def class_means(self) -> Tensor:
        """Returns: [K, d] float64 per-class means of the queued vectors (zero rows when empty)."""
        return self.class_sums / self.counts.clamp(min=1)[:, None]

    def covariance(self) -> Tensor:
        """Pooled within-class covariance of all queued vectors, plus ``eps * I``.

        ``(sum_i x_i x_i^T - sum_k n_k mu_k mu_k^T) / sum_k n_k`` from the running statistics,
        i.e. every vector centred on its own class mean, divided by the total number of queued
        vectors; symmetrised. With all queues empty it is ``eps * I``.

        Returns:
            Tensor: [d, d] float64, in feature units squared.
        """
        counts = self.counts.double()
        scaled_sums = self.class_sums * counts.clamp(min=1).rsqrt()[:, None]
        scatter = torch.addmm(self.outer_sum, scaled_sums.mT, scaled_sums, alpha=-1)
        cov = scatter.add(scatter.mT).div_(2 * counts.sum().clamp(min=1))
        cov.diagonal().add_(self.eps)
        return cov


def robust_cholesky(cov: Tensor, eps: float = 1e-4, max_tries: int = 6) -> Tensor:
    """Lower-triangular factor ``L`` with ``L L^T`` = the symmetrised ``cov`` plus a ridge.

    Tries ``cov + eps * I``; when that is not numerically positive definite, retries with the
    ridge ``eps * m * 10^t`` (t = 1, 2, ...; m = mean absolute diagonal of ``cov``, or 1 when it
    is zero) for ``max_tries`` attempts in all; then falls back to an eigendecomposition with the
    eigenvalues clamped at ``eps * m`` (re-triangularised by a QR decomposition).

    Args:
        cov (Tensor): [d, d] floating covariance (feature units squared).
        eps (float): ridge of the first attempt, >= 0.
        max_tries (int): number of Cholesky attempts (>= 1) before the eigenvalue fallback.

    Returns:
        Tensor: [d, d] lower-triangular with positive diagonal, dtype and device of ``cov``;
        always finite.
    """
    _check_covariance(cov)
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1, got {max_tries}")
    shifted = cov.add(cov.mT).mul_(0.5)
    scale = float(shifted.diagonal().abs().mean()) or 1.0
    floor = max(eps, torch.finfo(cov.dtype).eps) * scale
    ridge = 0.0
    for attempt in range(max_tries):
        previous, ridge = ridge, (eps if attempt == 0 else floor * 10**attempt)
        shifted.diagonal().add_(ridge - previous)
        # With a finite input, info == 0 implies a finite factor: |L_ij| <= sqrt(A_ii).
        factor, info = torch.linalg.cholesky_ex(shifted)
        if int(info) == 0:
            if attempt > 0:
                logger.debug("Cholesky needed a ridge of %.3g (attempt %d)", ridge, attempt + 1)
            return factor
    logger.warning(
        "Cholesky failed %d times (last ridge %.3g); clamping eigenvalues at %.3g instead",
        max_tries,
        ridge,
        floor,
    )
    shifted.diagonal().sub_(ridge)
    return _eigen_factor(shifted, floor)


def _check_covariance(cov: Tensor) -> None:
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise ValueError(
            f"covariance must be a square [d, d] matrix with d >= 1, got {tuple(cov.shape)}"
        )
    if not cov.is_floating_point():
        raise ValueError(f"covariance must be floating point, got {cov.dtype}")
    if not _all_finite(cov):
        raise ValueError("covariance contains NaN or Inf")


def _all_finite(tensor: Tensor) -> bool:
    """Whether a non-empty tensor has no NaN/Inf; one pass (min and max propagate NaN)."""
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def _eigen_factor(cov: Tensor, floor: float) -> Tensor:
    """Lower-triangular ``L`` with ``L L^T = V max(w, floor) V^T`` for ``cov = V w V^T``.

    Args:
        cov (Tensor): [d, d] symmetric matrix.
        floor (float): smallest eigenvalue kept, > 0.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    root = eigenvectors * eigenvalues.clamp(min=floor).sqrt()
    # root @ root^T = R^T Q^T Q R = R^T R for root^T = Q R, so R^T is a lower-triangular factor.
    upper = torch.linalg.qr(root.mT, mode="r").R
    signs = torch.where(upper.diagonal() < 0, -1.0, 1.0).to(upper.dtype)
    return (upper * signs[:, None]).mT.contiguous()


def chi2_upper_quantile(q: Tensor, dof: int) -> Tensor:
    """Inverse survival function of the chi-square distribution (``scipy.stats.chi2.isf``).

    Solves ``Q(dof / 2, x / 2) = q`` for x, where Q is the regularised upper incomplete gamma
    function: Wilson-Hilferty initial guess, then Newton iterations on ``log Q`` (which is concave
    and decreasing in x for dof >= 2, so the iterates converge monotonically after the first).
    Probabilities below 1e-300 are clamped to 1e-300.

    Args:
        q (Tensor): upper-tail probabilities in (0, 1], any shape and floating dtype.
        dof (int): degrees of freedom, >= 1.

    Returns:
        Tensor: chi-square quantiles x >= 0 (squared radii), float64, shape and device of ``q``.
    """
    if not q.is_floating_point():
        raise ValueError(f"q must be floating point, got {q.dtype}")
    if q.numel() and not bool(((q > 0) & (q <= 1)).all()):
        raise ValueError("upper-tail probabilities q must lie in (0, 1]")
    if dof < 1:
        raise ValueError(f"dof must be a positive integer, got {dof}")
    return _chi2_upper_quantile_from_log(torch.log(q.double()), dof)


def _chi2_upper_quantile_from_log(log_q: Tensor, dof: int) -> Tensor:
    """:func:`chi2_upper_quantile` from ``log q`` (float64, <= 0), without input validation."""
    log_q = log_q.clamp(min=_LOG_Q_MIN)
    tiny = torch.finfo(torch.float64).tiny
    x = _initial_chi2_quantile(log_q, dof).clamp(min=tiny)
    shape = torch.full_like(x, 0.5 * dof)
    log_norm = math.lgamma(0.5 * dof) + math.log(2.0)
    for _ in range(_NEWTON_STEPS):
        log_pdf = (0.5 * dof - 1) * torch.log(0.5 * x) - 0.5 * x - log_norm
        upper = torch.special.gammaincc(shape, 0.5 * x)
        # Where Q underflows, log Q ~ log(2 pdf) (its large-x asymptote) still points the way.
        log_sf = torch.where(upper > 0, torch.log(upper), log_pdf + math.log(2.0))
        step = (log_sf - log_q) * torch.exp(log_sf - log_pdf)
        x = (x + torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)).clamp(min=tiny)
    return torch.where(log_q < 0, x, torch.zeros_like(x))


def _initial_chi2_quantile(log_q: Tensor, dof: int) -> Tensor:
    """Starting point of the Newton iterations: the larger of two approximations of the quantile.

    Wilson-Hilferty (accurate except far in the lower tail) and, for the lower tail, the inverse
    of ``P(a, y) ~ y^a / Gamma(a + 1)`` (a lower bound of the root, accurate for small y).
    """
    z = -torch.special.ndtri(torch.exp(log_q))
    c = 2.0 / (9.0 * dof)
    wilson_hilferty = dof * (1.0 - c + z * math.sqrt(c)).clamp(min=0) ** 3
    half_dof = 0.5 * dof
    log_lower_tail = torch.log(-torch.expm1(log_q))
    small_x = 2.0 * torch.exp((log_lower_tail + math.lgamma(half_dof + 1.0)) / half_dof)
    return torch.maximum(wilson_hilferty, small_x)


def sample_virtual_outliers(
    means: Tensor,
    cov: Tensor,
    num_candidates: int,
    num_select: int,
    generator: Optional[torch.Generator] = None,
    eps: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Exact fast sampler of the ``num_select`` lowest-likelihood of ``num_candidates`` samples.

    Same law as :func:`sample_virtual_outliers_bruteforce`. For each class it draws the top
    ``s = num_select`` order statistics of N iid uniforms directly (sequential representation
    ``log U_(N-j) = -sum_{i<=j} E_i / (N - i)`` with ``E_i ~ Exp(1)``), maps them to chi-square
    values through the upper-tail probability ``1 - U`` (computed as ``-expm1(log U)``), and
    gives each radius an independent uniform direction. Computed in float64 on the device of
    ``means`` with one Cholesky factor of ``cov`` for all classes.

    Args:
        means (Tensor): [K, d] class means.
        cov (Tensor): [d, d] shared covariance (feature units squared).
        num_candidates (int): N, candidates per class (the reference draws this many).
        num_select (int): s, lowest-likelihood samples kept per class, 1 <= s <= N.
        generator (torch.Generator, optional): source of all randomness, on ``means``' device.
        eps (float): ridge passed to :func:`robust_cholesky`.

    Returns:
        tuple[Tensor, Tensor]: outliers [K * s, d] float32, grouped by class (class 0's s first),
        and their class labels [K * s] int64.
    """
    _check_sampler_inputs(means, cov, num_candidates, num_select)
    num_classes, dim = means.shape
    device = means.device
    factor = robust_cholesky(cov.to(device=device, dtype=torch.float64), eps)
    sq_radii = _top_chi2_order_statistics(
        num_classes, dim, num_candidates, num_select, generator, device
    )
    directions = torch.randn(
        num_classes * num_select, dim, generator=generator, dtype=torch.float64, device=device
    )
    scale = (sq_radii.reshape(-1).sqrt() / torch.linalg.vector_norm(directions, dim=1))[:, None]
    labels = torch.arange(num_classes, device=device).repeat_interleave(num_select)
    outliers = means.double()[labels] + (directions * scale) @ factor.mT
    return outliers.float(), labels


def _top_chi2_order_statistics(
    num_classes: int,
    dof: int,
    num_candidates: int,
    num_select: int,
    generator: Optional[torch.Generator],
    device: torch.device,
) -> Tensor:
    """The ``num_select`` largest of ``num_candidates`` iid chi-square(dof) values, per class.

    Returns:
        Tensor: [num_classes, num_select] float64 on ``device``, each row in decreasing order.
    """
    uniforms = torch.rand(
        num_classes, num_select, generator=generator, dtype=torch.float64, device=device
    )
    exponentials = -torch.log1p(-uniforms)
    remaining = num_candidates - torch.arange(num_select, dtype=torch.float64, device=device)
    log_top_uniforms = -torch.cumsum(exponentials / remaining, dim=1)
    log_upper_tail = torch.log(-torch.expm1(log_top_uniforms))
    return _chi2_upper_quantile_from_log(log_upper_tail, dof)


def sample_virtual_outliers_bruteforce(
    means: Tensor,
    cov: Tensor,
    num_candidates: int,
    num_select: int,
    generator: Optional[torch.Generator] = None,
    eps: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """The reference algorithm: draw every candidate, keep the lowest log-likelihoods.

    For each class, ``num_candidates`` full samples of ``MultivariateNormal(mu_k, L L^T)`` are
    drawn (as ``mu_k + z L^T`` with ``z = torch.randn(..., generator=generator)``), scored with
    the distribution's ``log_prob`` and the ``num_select`` lowest are kept. Classes are batched
    in chunks of at most ``2**24`` candidate coordinates. Computed in the dtype of ``means``
    (float32 like the reference, or float64 for a precise oracle). Costs O(K * N * d^2); the
    oracle for :func:`sample_virtual_outliers` in tests and benchmarks.

    Args and returns: as :func:`sample_virtual_outliers`.
    """
    _check_sampler_inputs(means, cov, num_candidates, num_select)
    num_classes, dim = means.shape
    factor = robust_cholesky(cov.to(means), eps)
    chunk = max(1, _BRUTEFORCE_CHUNK_ELEMENTS // (num_candidates * dim))
    selected = [
        _select_lowest_likelihood(chunk_means, factor, num_candidates, num_select, generator)
        for chunk_means in means.split(chunk)
    ]
    labels = torch.arange(num_classes, device=means.device).repeat_interleave(num_select)
    outliers = torch.cat(selected) if selected else means.new_zeros(0, dim)
    return outliers.float(), labels


def _select_lowest_likelihood(
    means: Tensor,
    factor: Tensor,
    num_candidates: int,
    num_select: int,
    generator: Optional[torch.Generator],
) -> Tensor:
    """Brute force for a chunk of C classes: [C * num_select, d] lowest-likelihood candidates."""
    num_classes, dim = means.shape
    gaussian = torch.distributions.MultivariateNormal(means[:, None, :], scale_tril=factor)
    noise = torch.randn(
        num_classes,
        num_candidates,
        dim,
        generator=generator,
        dtype=means.dtype,
        device=means.device,
    )
    candidates = means[:, None, :] + noise @ factor.mT
    lowest = torch.topk(gaussian.log_prob(candidates), num_select, dim=1, largest=False).indices
    return torch.gather(candidates, 1, lowest[:, :, None].expand(-1, -1, dim)).reshape(-1, dim)


def _check_sampler_inputs(means: Tensor, cov: Tensor, num_candidates: int, num_select: int):
    if means.dim() != 2:
        raise ValueError(f"means must have shape [K, d], got {tuple(means.shape)}")
    if not means.is_floating_point():
        raise ValueError(f"means must be floating point, got {means.dtype}")
    dim = means.shape[1]
    if dim < 1:
        raise ValueError("means must have at least one feature dimension, got d = 0")
    if cov.shape != (dim, dim):
        raise ValueError(
            f"cov must have shape [{dim}, {dim}] to match means, got {tuple(cov.shape)}"
        )
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
    if not 1 <= num_select <= num_candidates:
        raise ValueError(
            f"num_select must be in [1, num_candidates={num_candidates}], got {num_select}"
        )
