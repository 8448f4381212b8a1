"""Energy scores and the VOS uncertainty head (plain PyTorch).

All scores are ID-ness scores: higher means more in-distribution. Every function takes the
logits of the K foreground classes only (the background logit removed), shape [N, K].
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EnergyUncertaintyHead",
    "energy_score",
    "max_logit_score",
    "msp_score",
    "weighted_energy",
]


def _check_logits(logits: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [N, K], got {tuple(logits.shape)}")


def weighted_energy(logits: Tensor, weights: Tensor) -> Tensor:
    """Weighted energy ``E = -log sum_k relu(theta_k) exp(f_k)`` (VOS eq. 5 with learnable weights).

    Computed as ``-logsumexp(f + log(max(relu(theta), tiny)))`` so that large logits do not
    overflow and zero weights contribute (next to) nothing; in at least float32.

    Args:
        logits (Tensor): [N, K] foreground class logits f.
        weights (Tensor): [K] raw weights theta (relu is applied here).

    Returns:
        Tensor: [N] energies (lower = more familiar), dtype of ``logits`` promoted to at least
        float32.
    """
    _check_logits(logits)
    if weights.shape != (logits.shape[1],):
        raise ValueError(
            f"weights must have shape [{logits.shape[1]}] to match logits, "
            f"got {tuple(weights.shape)}"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    tiny = torch.finfo(dtype).tiny
    log_weights = torch.log(F.relu(weights.to(dtype)).clamp(min=tiny))
    return -torch.logsumexp(logits.to(dtype) + log_weights, dim=1)


def energy_score(logits: Tensor) -> Tensor:
    """Returns: [N] ``logsumexp_k f_k`` (negative energy at T = 1)."""
    _check_logits(logits)
    return torch.logsumexp(logits, dim=1)


def msp_score(logits: Tensor) -> Tensor:
    """Returns: [N] maximum softmax probability over the K foreground classes."""
    _check_logits(logits)
    return torch.softmax(logits, dim=1).amax(dim=1)


def max_logit_score(logits: Tensor) -> Tensor:
    """Returns: [N] maximum foreground logit."""
    _check_logits(logits)
    return logits.amax(dim=1)


class EnergyUncertaintyHead(nn.Module):
    """Learnable energy weights and the head mapping energy to an ID-vs-OOD logit.

    Parameters: ``energy_weights`` (theta, [K], initialised to 1 so that initially
    ``E = -logsumexp(f)``) and, on ``-E``, either ``logistic`` (``nn.Linear(1, 1)``, initialised
    to the identity: the paper's logistic regression) or, with ``hidden_dim > 0``, ``mlp``
    (``1 -> hidden_dim -> 1`` with a ReLU: the VOS authors' MLP variant, which can score a band
    of energies as ID and both sides of it as OOD, which no monotone logistic layer can).
    """

    def __init__(self, num_classes: int, hidden_dim: int = 0):
        """
        Args:
            num_classes (int): K, the number of foreground classes.
            hidden_dim (int): 0 = the logistic layer; > 0 = an MLP with this many hidden units.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        if hidden_dim < 0:
            raise ValueError(f"hidden_dim must be >= 0 (0 = logistic layer), got {hidden_dim}")
        self.num_classes = num_classes
        self.energy_weights = nn.Parameter(torch.ones(num_classes))
        if hidden_dim == 0:
            self.logistic = nn.Linear(1, 1)
            with torch.no_grad():
                self.logistic.weight.fill_(1.0)
                self.logistic.bias.zero_()
        else:
            self.mlp = nn.Sequential(nn.Linear(1, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    @property
    def _energy_to_logit(self) -> nn.Module:
        return self.logistic if hasattr(self, "logistic") else self.mlp

    def energy(self, logits: Tensor) -> Tensor:
        """Returns: [N] weighted energies of [N, K] foreground logits."""
        _check_logits(logits)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have {self.num_classes} foreground classes, got {logits.shape[1]}"
            )
        return weighted_energy(logits, self.energy_weights)

    def id_logit(self, energy: Tensor) -> Tensor:
        """Returns: [N] ID-vs-OOD logits of [N] energies (positive = ID)."""
        if energy.dim() != 1:
            raise ValueError(f"energy must have shape [N], got {tuple(energy.shape)}")
        head = self._energy_to_logit
        negative_energy = -energy.to(next(head.parameters()).dtype)
        return head(negative_energy[:, None]).squeeze(1)

    def id_score(self, energy: Tensor) -> Tensor:
        """Returns: [N] ``sigmoid(id_logit(energy))`` in (0, 1), the VOS score (eq. 8)."""
        return torch.sigmoid(self.id_logit(energy))

    def loss(self, id_energy: Tensor, ood_energy: Tensor) -> Tensor:
        """Uncertainty loss: binary cross-entropy, real foreground boxes ID (1), outliers OOD (0).

        Args:
            id_energy (Tensor): [N] energies of ID boxes (may be empty).
            ood_energy (Tensor): [M] energies of virtual outliers (may be empty).

        Returns:
            Tensor: scalar, mean over the N + M terms.
        """
        if id_energy.numel() + ood_energy.numel() == 0:
            raise ValueError("uncertainty loss needs at least one ID or OOD energy, got none")
        logits = self.id_logit(torch.cat((id_energy, ood_energy)))
        targets = torch.cat(
            (logits.new_ones(id_energy.numel()), logits.new_zeros(ood_energy.numel()))
        )
        return F.binary_cross_entropy_with_logits(logits, targets)

    def vos_score(self, logits: Tensor) -> Tensor:
        """Returns: [N] ID-ness score ``id_score(energy(logits))`` of [N, K] foreground logits."""
        return self.id_score(self.energy(logits))
