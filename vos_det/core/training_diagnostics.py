"""What a training step can tell about whether an uncertainty head learns (plain PyTorch).

Logged by the box predictor in Detectron2's event storage (TensorBoard, ``metrics.json``):
a binary cross-entropy that stays at :func:`binary_entropy` of the ID/outlier mix has learnt
nothing, and :func:`separation_auroc` says how well the head's logits rank real boxes above
virtual outliers in the batch.
"""

import math

import torch
from torch import Tensor

__all__ = ["binary_entropy", "separation_auroc"]


def binary_entropy(num_positive: int, num_negative: int) -> float:
    """The cross-entropy (nats) of a constant prediction at the share of positives: what a
    binary cross-entropy loss on ``num_positive`` ID and ``num_negative`` OOD terms reaches
    without telling them apart. 0 when either count is 0."""
    total = num_positive + num_negative
    if num_positive < 0 or num_negative < 0 or total == 0:
        raise ValueError(f"counts must be >= 0 and not both 0, got {num_positive}, {num_negative}")
    entropy = 0.0
    for count in (num_positive, num_negative):
        if count:
            share = count / total
            entropy -= share * math.log(share)
    return entropy


def separation_auroc(id_logits: Tensor, ood_logits: Tensor) -> float:
    """Area under the ROC curve of ranking ``id_logits`` above ``ood_logits``: the probability
    that a random ID value exceeds a random OOD one, ties counting half (Mann-Whitney U).

    Args:
        id_logits (Tensor): [N] values of real (ID) samples, N >= 1.
        ood_logits (Tensor): [M] values of virtual outliers, M >= 1.

    Returns:
        float: in [0, 1]; 0.5 = no separation.
    """
    if (
        id_logits.dim() != 1
        or ood_logits.dim() != 1
        or not id_logits.numel()
        or not ood_logits.numel()
    ):
        raise ValueError(
            "separation_auroc needs non-empty 1-D ID and OOD values, got shapes "
            f"{tuple(id_logits.shape)} and {tuple(ood_logits.shape)}"
        )
    values = torch.cat((id_logits, ood_logits)).detach().double()
    ranks = _average_ranks(values)
    n, m = id_logits.numel(), ood_logits.numel()
    u_statistic = ranks[:n].sum().item() - n * (n + 1) / 2
    return u_statistic / (n * m)


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of ``values`` (ascending), tied values sharing their mean rank."""
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()
    mean_rank = last_rank - (counts.double() - 1) / 2
    return mean_rank[inverse]
