"""A feature-space uncertainty head: an MLP on the box features themselves (plain PyTorch).

VOS's uncertainty head sees a box only through its energy ``-logsumexp(W z + b)``, which is
convex in the feature z and blind to offsets in the null space of W: a shell of virtual
outliers around a class cannot all score below the real features inside it. An MLP on the
(L2-normalised) feature z, trained on real foreground features (ID) against virtual outliers
(OOD), has no such blind spot (the idea of NPOS, Tao et al. 2023).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FeatureUncertaintyHead"]


class FeatureUncertaintyHead(nn.Module):
    """``feature_dim -> hidden_dim -> hidden_dim -> 1`` MLP (ReLU) giving an ID-vs-OOD logit.

    With ``normalize`` the input is L2-normalised first: the head then judges a feature by its
    direction, in which the classes of a ReLU feature space differ, and its scale-free input
    keeps one learning rate right for any feature magnitude.
    """

    def __init__(self, feature_dim: int, hidden_dim: int, normalize: bool = True):
        """
        Args:
            feature_dim (int): D, the dimension of the features it scores.
            hidden_dim (int): width of the two hidden layers.
            normalize (bool): L2-normalise the features before the MLP.
        """
        super().__init__()
        if feature_dim < 1 or hidden_dim < 1:
            raise ValueError(
                f"feature_dim and hidden_dim must be positive, got {feature_dim}, {hidden_dim}"
            )
        self.feature_dim = feature_dim
        self.normalize = normalize
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def id_logit(self, features: Tensor) -> Tensor:
        """Returns: [N] ID-vs-OOD logits (positive = ID) of [N, D] features."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"features must have shape [N, {self.feature_dim}], got {tuple(features.shape)}"
            )
        features = features.to(self.mlp[0].weight.dtype)
        if self.normalize:
            features = F.normalize(features, dim=1)
        return self.mlp(features).squeeze(1)

    def id_score(self, features: Tensor) -> Tensor:
        """Returns: [N] ``sigmoid(id_logit(features))`` in (0, 1); higher = more ID."""
        return torch.sigmoid(self.id_logit(features))

    def loss(self, id_features: Tensor, ood_features: Tensor) -> Tensor:
        """Binary cross-entropy, real foreground features ID (1), virtual outliers OOD (0).

        Args:
            id_features (Tensor): [N, D] features of real foreground boxes (may be empty).
            ood_features (Tensor): [M, D] virtual outliers (may be empty).

        Returns:
            Tensor: scalar, mean over the N + M terms.
        """
        if id_features.shape[0] + ood_features.shape[0] == 0:
            raise ValueError("the feature head's loss needs at least one feature, got none")
        logits = self.id_logit(torch.cat((id_features, ood_features.to(id_features.dtype))))
        targets = torch.cat(
            (logits.new_ones(id_features.shape[0]), logits.new_zeros(ood_features.shape[0]))
        )
        return F.binary_cross_entropy_with_logits(logits, targets)
