"""Class statistics of several feature layers, and their combined Mahalanobis distance (plain
PyTorch).

Layer-feature scores (in the spirit of SAFE, Wilson et al. ICCV 2023) read a detection's
features at several named layers of the backbone (ROI-pooled, one (R, C_l) vector per layer)
instead of the box head's output. Each layer has its own class queues
(:class:`~vos_det.core.queues.ClassFeatureQueues`) and Gaussians, so each gives a squared
Mahalanobis distance ``D_l`` to the nearest class mean. The layers' distances live on
different scales (they grow with C_l), so before they are summed each is standardised by the
distances of the layer's own queued vectors::

    z_l(x) = (D_l(x) - mean_l) / std_l,      combined(x) = sum_l z_l(x)

where ``mean_l`` and ``std_l`` are the mean and standard deviation of ``D_l`` over the vectors
queued for layer l (the in-distribution reference; in-sample, so somewhat smaller than for
unseen ID boxes, alike for every layer whose queues hold more vectors than dimensions).
"""

from typing import Dict, Mapping, Sequence

from torch import Tensor, nn

from .feature_statistics import MissingStatisticsError, cached_statistics, gaussian_statistics
from .queues import ClassFeatureQueues

__all__ = ["DistanceReference", "LayerFeatureQueues", "layer_distance"]


class DistanceReference:
    """Mean and standard deviation of the queued vectors' own smallest squared Mahalanobis
    distance to a class mean (:meth:`GaussianFeatureStatistics.min_class_distance`).

    Attributes:
        mean (float): mean squared distance (feature units squared, over the covariance).
        std (float): its standard deviation (ddof 0), at least 1e-12.
    """

    def __init__(self, queues: ClassFeatureQueues):
        """
        Args:
            queues (ClassFeatureQueues): the queues; read once.

        Raises:
            MissingStatisticsError: no class holds 2 vectors.
        """
        distances = gaussian_statistics(queues).min_class_distance(queues.queued_features())
        self.mean = float(distances.mean())
        self.std = max(float(distances.std(unbiased=False)), 1e-12)


class LayerFeatureQueues(nn.Module):
    """Per-class feature queues of several named layers, pushed together.

    Attributes:
        layers (nn.ModuleDict): layer name -> its :class:`ClassFeatureQueues` (K classes, Q
            vectors per class, C_l dimensions).
    """

    def __init__(
        self, num_classes: int, capacity: int, dims: Mapping[str, int], **queue_options
    ):
        """
        Args:
            num_classes (int): K.
            capacity (int): Q, vectors kept per class and layer.
            dims (Mapping[str, int]): layer name -> C_l, in the layers' order.
            queue_options: keyword arguments of :class:`ClassFeatureQueues` (``eps``,
                ``recompute_every``, ``covariance_estimator``).

        Raises:
            ValueError: no layer.
        """
        super().__init__()
        if not dims:
            raise ValueError("LayerFeatureQueues needs at least one layer.")
        self.layers = nn.ModuleDict(
            {
                name: ClassFeatureQueues(num_classes, capacity, dim, **queue_options)
                for name, dim in dims.items()
            }
        )

    @property
    def names(self) -> Sequence[str]:
        """The layer names, in order."""
        return tuple(self.layers.keys())

    @property
    def counts(self) -> Tensor:
        """(K,) int64 vectors per class (the same for every layer: they are pushed together)."""
        return next(iter(self.layers.values())).counts

    def push(self, features: Mapping[str, Tensor], labels: Tensor) -> None:
        """Queue the (N, C_l) features of N boxes at every layer, with their (N,) classes.

        Raises:
            KeyError: naming a layer ``features`` lacks.
        """
        missing = [name for name in self.names if name not in features]
        if missing:
            raise KeyError(f"No features of the layer(s) {missing} to queue.")
        for name, queues in self.layers.items():
            queues.push(features[name], labels)

    def distances(self, features: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        """Every layer's smallest squared Mahalanobis distance to a class mean.

        Args:
            features (Mapping[str, Tensor]): layer name -> (R, C_l) features of R boxes.

        Returns:
            dict[str, Tensor]: layer name -> (R,) float64 distances.

        Raises:
            MissingStatisticsError: a layer's queues hold no class with 2 vectors.
        """
        return {
            name: gaussian_statistics(queues).min_class_distance(features[name])
            for name, queues in self.layers.items()
        }

    def combined_distance(self, features: Mapping[str, Tensor]) -> Tensor:
        """Sum over the layers of the standardised distances ``(D_l - mean_l) / std_l``
        (:class:`DistanceReference`, cached per state of the queues).

        Args:
            features (Mapping[str, Tensor]): layer name -> (R, C_l) features of R boxes.

        Returns:
            Tensor: (R,) float64 (dimensionless).
        """
        total = None
        for name, distance in self.distances(features).items():
            reference = cached_statistics(self.layers[name], DistanceReference)
            standardised = (distance - reference.mean) / reference.std
            total = standardised if total is None else total + standardised
        return total


def layer_distance(queues: LayerFeatureQueues, features: Mapping[str, Tensor], name: str) -> Tensor:
    """The (R,) float64 smallest squared Mahalanobis distance of one layer's features.

    Raises:
        MissingStatisticsError: the queues keep no layer ``name``, or it has no class statistics.
    """
    if name not in queues.layers:
        raise MissingStatisticsError(
            f"No class statistics of the layer(s) {[name]}; the layer queues keep "
            f"{list(queues.names)}. Add them to VOS.LAYER_FEATURES.IN_FEATURES."
        )
    return gaussian_statistics(queues.layers[name]).min_class_distance(features[name])
