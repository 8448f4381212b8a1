"""Numerically guarded linear algebra for Gaussian feature statistics (plain PyTorch)."""

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["all_finite", "check_covariance", "robust_cholesky"]


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
    check_covariance(cov)
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


def check_covariance(cov: Tensor) -> None:
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise ValueError(
            f"covariance must be a square [d, d] matrix with d >= 1, got {tuple(cov.shape)}"
        )
    if not cov.is_floating_point():
        raise ValueError(f"covariance must be floating point, got {cov.dtype}")
    if not all_finite(cov):
        raise ValueError("covariance contains NaN or Inf")


def all_finite(tensor: Tensor) -> bool:
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
