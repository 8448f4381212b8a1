"""Gathering variable-length row blocks from every worker (queues stay identical under DDP)."""

import torch
import torch.distributed as dist
from detectron2.utils import comm

from ..core.queues import ClassFeatureQueues

__all__ = ["all_gather_rows", "push_rows"]


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate every worker's ``rows`` in rank order; each worker may hold a different count.

    Uses the default process group on the tensor's own device (gloo on CPU, NCCL on GPU), so no
    tensor leaves its device. Without a process group (or with one worker) it returns ``rows``.

    Args:
        rows (Tensor): (N_i, D) on worker i; D and dtype must match across workers.

    Returns:
        Tensor: (sum_i N_i, D), identical on every worker.
    """
    if comm.get_world_size() == 1:
        return rows
    count = torch.tensor([rows.shape[0]], device=rows.device, dtype=torch.int64)
    counts = [torch.zeros_like(count) for _ in range(comm.get_world_size())]
    dist.all_gather(counts, count)
    counts = [int(c.item()) for c in counts]
    if max(counts) == 0:
        return rows
    padded = rows.new_zeros((max(counts), rows.shape[1]))
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([block[:n] for block, n in zip(gathered, counts)], dim=0)


def push_rows(
    queues: ClassFeatureQueues, features: torch.Tensor, labels: torch.Tensor, sync: bool
) -> None:
    """Push (N, D) detached features with their (N,) classes; with ``sync``, every worker's
    rows go in, in rank order, so that the queues stay identical on every worker."""
    features = features.detach().float()
    if sync:
        rows = all_gather_rows(torch.cat([features, labels.float()[:, None]], dim=1))
        features, labels = rows[:, :-1], rows[:, -1].long()
    queues.push(features, labels)
