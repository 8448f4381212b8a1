"""Shrinkage estimates of a shared covariance from few vectors (plain PyTorch, float64).

A class Gaussian's covariance is estimated from the queued features: a few hundred vectors per
class in hundreds of dimensions, so the sample covariance ``S`` is barely full rank and its
smallest eigenvalues are far too small, which inflates the Mahalanobis distance along them. The
estimators here replace ``S`` by ``(1 - s) S + s mu I`` (``mu = trace(S) / d``) with a shrinkage
``s`` estimated from the data, in closed form:

- Ledoit-Wolf (Ledoit & Wolf 2004): ``s`` from the spread of the per-sample outer products
  around ``S``, which needs the sum of ``|x_i|^4`` besides ``S``;
- OAS, oracle approximating shrinkage (Chen et al. 2010): ``s`` from ``S`` and n alone.

Both follow scikit-learn's ``ledoit_wolf`` and ``oas`` with ``assume_centered=True`` (the tests
compare with them): the vectors come centred, here each on its own class mean.
"""

import torch
from torch import Tensor

__all__ = ["COVARIANCE_ESTIMATORS", "ledoit_wolf_shrinkage", "oas_shrinkage", "shrink"]

#: How :class:`~vos_det.core.queues.ClassFeatureQueues` estimates the shared covariance:
#: "ridge" (the sample covariance plus ``eps * I``), "ledoit_wolf" or "oas".
COVARIANCE_ESTIMATORS = ("ridge", "ledoit_wolf", "oas")


def ledoit_wolf_shrinkage(covariance: Tensor, num_samples: int, sum_norm4: Tensor) -> float:
    """The Ledoit-Wolf shrinkage of a sample covariance of centred vectors.

    Args:
        covariance (Tensor): [d, d] float64 sample covariance ``S = X^T X / n`` of the centred
            vectors ``X`` ([n, d]).
        num_samples (int): n >= 1.
        sum_norm4 (Tensor): scalar ``sum_i |x_i|^4`` over the centred vectors.

    Returns:
        float: the shrinkage s in [0, 1] (0 for d = 1 or when every vector is 0).
    """
    dim = covariance.shape[0]
    if dim == 1:
        return 0.0
    mu = covariance.trace() / dim
    frobenius_sq = covariance.square().sum()
    # Mean squared distance of the outer products x_i x_i^T from S, over n (the noise of S).
    beta = (float(sum_norm4) / num_samples - frobenius_sq) / (dim * num_samples)
    # Squared distance of S from mu I (the signal).
    delta = (frobenius_sq - 2 * mu * covariance.trace() + dim * mu**2) / dim
    beta = torch.minimum(beta, delta)
    return 0.0 if float(beta) == 0 else float(beta / delta)


def oas_shrinkage(covariance: Tensor, num_samples: int) -> float:
    """The oracle approximating shrinkage of a sample covariance (Chen et al. 2010, eq. 23, as
    scikit-learn computes it).

    Args:
        covariance (Tensor): [d, d] float64 sample covariance of n centred vectors.
        num_samples (int): n >= 1.

    Returns:
        float: the shrinkage s in [0, 1] (0 for d = 1).
    """
    dim = covariance.shape[0]
    if dim == 1:
        return 0.0
    alpha = float(covariance.square().mean())
    mu_sq = float(covariance.trace() / dim) ** 2
    denominator = (num_samples + 1) * (alpha - mu_sq / dim)
    return 1.0 if denominator == 0 else min((alpha + mu_sq) / denominator, 1.0)


def shrink(covariance: Tensor, shrinkage: float) -> Tensor:
    """Returns: [d, d] ``(1 - shrinkage) * covariance + shrinkage * trace(covariance) / d * I``."""
    mu = covariance.trace() / covariance.shape[0]
    shrunk = covariance * (1 - shrinkage)
    shrunk.diagonal().add_(shrinkage * mu)
    return shrunk
