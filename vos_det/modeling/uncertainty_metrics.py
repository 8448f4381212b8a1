"""Training diagnostics of the uncertainty heads, written to Detectron2's event storage.

Per step with virtual outliers (``vos/*`` in ``metrics.json`` and TensorBoard):

* ``id_energy``, ``outlier_energy``: mean weighted energy of real foreground boxes and outliers
  (an energy head that learns gives outliers the higher energy);
* ``uncertainty_loss`` next to ``uncertainty_mix_entropy``, the loss of a head that cannot tell
  them apart (:func:`vos_det.core.training_diagnostics.binary_entropy` of the batch's ID/outlier mix);
* ``uncertainty_auroc``: how well the head's logits rank real boxes above outliers (0.5: not at
  all); ``logistic_slope``: the logistic layer's weight on ``-E`` (paper head only);
* the same loss, entropy and AUROC for the feature head (``feature_head_*``).
"""

import torch
from detectron2.utils.events import EventStorage

from ..core.energy import EnergyUncertaintyHead
from ..core.feature_head import FeatureUncertaintyHead
from ..core.training_diagnostics import binary_entropy, separation_auroc

__all__ = ["log_feature_head_metrics", "log_uncertainty_metrics"]


@torch.no_grad()
def log_uncertainty_metrics(
    storage: EventStorage,
    head: EnergyUncertaintyHead,
    id_energy: torch.Tensor,
    ood_energy: torch.Tensor,
    loss: torch.Tensor,
) -> None:
    """Log the energy head's diagnostics of one step: [N] ID and [M] outlier energies, its loss."""
    if id_energy.numel():
        storage.put_scalar("vos/id_energy", id_energy.mean().item())
    if not ood_energy.numel():
        return
    storage.put_scalar("vos/outlier_energy", ood_energy.mean().item())
    storage.put_scalar("vos/uncertainty_loss", loss.item())
    storage.put_scalar(
        "vos/uncertainty_mix_entropy", binary_entropy(id_energy.numel(), ood_energy.numel())
    )
    if hasattr(head, "logistic"):
        storage.put_scalar("vos/logistic_slope", head.logistic.weight.item())
    if id_energy.numel():
        auroc = separation_auroc(head.id_logit(id_energy), head.id_logit(ood_energy))
        storage.put_scalar("vos/uncertainty_auroc", auroc)


@torch.no_grad()
def log_feature_head_metrics(
    storage: EventStorage,
    head: FeatureUncertaintyHead,
    id_features: torch.Tensor,
    outliers: torch.Tensor,
    loss: torch.Tensor,
) -> None:
    """Log the feature head's diagnostics of one step: [N, D] ID features, [M, D] outliers."""
    if not outliers.shape[0]:
        return
    storage.put_scalar("vos/feature_head_loss", loss.item())
    storage.put_scalar(
        "vos/feature_head_mix_entropy", binary_entropy(id_features.shape[0], outliers.shape[0])
    )
    if id_features.shape[0]:
        auroc = separation_auroc(head.id_logit(id_features), head.id_logit(outliers))
        storage.put_scalar("vos/feature_head_auroc", auroc)
