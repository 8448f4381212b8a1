"""Virtual-outlier sampling from class-conditional Gaussians with a shared covariance (plain PyTorch).

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

import math
from typing import Optional

import torch
from torch import Tensor

from .linalg import robust_cholesky

__all__ = [
    "chi2_upper_quantile",
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
