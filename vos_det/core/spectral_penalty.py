"""FEVER-OOD's regularisers on the spectrum of the classifier weight (plain PyTorch).

The energy ``-logsumexp(W z + b)`` cannot see an offset of the feature z that lies in the null
space of the (K, D) foreground classifier weight W, and barely sees one along a right singular
vector of a small singular value. FEVER-OOD (Isaac-Medina et al. 2024) shrinks the first with a
lower feature dimension D (a projection before the classifier, ``VOS.FEVER.PROJECTION_DIM``)
and the second with a penalty that raises W's least singular value (:func:`singular_value_penalty`).
"""

import torch
from torch import Tensor

__all__ = ["SINGULAR_VALUE_PENALTIES", "singular_value_penalty"]

#: The penalties of :func:`singular_value_penalty`, by name.
SINGULAR_VALUE_PENALTIES = ("least_singular_value", "condition_number")


def singular_value_penalty(weight: Tensor, kind: str) -> Tensor:
    """A penalty that falls as the least singular value of ``weight`` grows.

    Args:
        weight (Tensor): (K, D) classifier weight (the foreground rows).
        kind (str): ``"least_singular_value"``: ``1 / sigma_min`` (scale-dependent: it also
            rewards larger weights, which weight decay balances); ``"condition_number"``:
            ``sigma_max / sigma_min`` (scale-free: only the shape of the spectrum).

    Returns:
        Tensor: scalar penalty, differentiable in ``weight`` (singular values by
        ``torch.linalg.svdvals``, computed in at least float32).
    """
    if kind not in SINGULAR_VALUE_PENALTIES:
        raise ValueError(f"kind must be one of {', '.join(SINGULAR_VALUE_PENALTIES)}, got {kind!r}")
    if weight.dim() != 2 or min(weight.shape) == 0:
        raise ValueError(f"weight must be a non-empty (K, D) matrix, got {tuple(weight.shape)}")
    singular_values = torch.linalg.svdvals(
        weight.to(torch.promote_types(weight.dtype, torch.float32))
    )
    least = singular_values[-1]
    if kind == "least_singular_value":
        return 1.0 / least
    return singular_values[0] / least
