"""Shrinkage covariance estimates of the queues, against scikit-learn's estimators."""

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf, oas

from vos_det.core.covariance import ledoit_wolf_shrinkage, oas_shrinkage, shrink
from vos_det.core.feature_statistics import GaussianFeatureStatistics
from vos_det.core.queues import ClassFeatureQueues


def _class_centred(queues: ClassFeatureQueues) -> np.ndarray:
    """Every queued vector minus its class mean, stacked: the data sklearn is given."""
    rows = []
    for k in range(queues.num_classes):
        x = queues.class_features(k).double().numpy()
        if len(x):
            rows.append(x - x.mean(0))
    return np.concatenate(rows)


def _filled_queues(estimator: str, counts=(30, 12, 50), dim=24, capacity=40, seed=0):
    """Queues over capacity for one class (its ring wrapped), from anisotropic Gaussians."""
    generator = torch.Generator().manual_seed(seed)
    queues = ClassFeatureQueues(len(counts), capacity, dim, covariance_estimator=estimator)
    scales = torch.linspace(0.05, 3.0, dim)
    for k, count in enumerate(counts):
        features = torch.randn(count, dim, generator=generator) * scales + 2.0 * k
        queues.push(features, torch.full((count,), k))
    return queues


@pytest.mark.parametrize("estimator, reference", [("ledoit_wolf", ledoit_wolf), ("oas", oas)])
@pytest.mark.parametrize("dim", [24, 80])  # fewer and more dimensions than vectors per class
def test_shrunk_covariance_is_sklearns_on_the_class_centred_vectors(estimator, reference, dim):
    queues = _filled_queues(estimator, dim=dim)
    expected, expected_shrinkage = reference(_class_centred(queues), assume_centered=True)
    np.testing.assert_allclose(queues.covariance().numpy(), expected, rtol=1e-8, atol=1e-10)
    assert 0 < expected_shrinkage < 1


def test_shrinkage_coefficients_and_the_ridge():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(15, 6)) * np.arange(1, 7)
    covariance = torch.from_numpy(x.T @ x / len(x))
    norm4 = torch.tensor((np.square(x).sum(1) ** 2).sum())
    _, lw = ledoit_wolf(x, assume_centered=True)
    _, oa = oas(x, assume_centered=True)
    assert ledoit_wolf_shrinkage(covariance, len(x), norm4) == pytest.approx(lw, rel=1e-10)
    assert oas_shrinkage(covariance, len(x)) == pytest.approx(oa, rel=1e-10)
    expected = (1 - 0.25) * x.T @ x / len(x) + 0.25 * np.trace(x.T @ x / len(x)) / 6 * np.eye(6)
    np.testing.assert_allclose(shrink(covariance, 0.25).numpy(), expected, rtol=1e-12)
    # One dimension: nothing to shrink; the ridge estimator keeps today's S + eps I.
    assert ledoit_wolf_shrinkage(covariance[:1, :1], 15, norm4) == 0.0
    ridge = _filled_queues("ridge")
    sample = _class_centred(ridge)
    np.testing.assert_allclose(
        ridge.covariance().numpy(), sample.T @ sample / len(sample) + 1e-4 * np.eye(24), rtol=1e-8
    )


def test_mahalanobis_distances_use_the_shrunk_covariance():
    queues = _filled_queues("ledoit_wolf", dim=80)
    covariance = queues.covariance().numpy()
    features = torch.randn(5, 80, dtype=torch.float64)
    distances = GaussianFeatureStatistics(queues).class_distances(features).numpy()
    means = queues.class_means().numpy()
    inverse = np.linalg.inv(covariance)
    for k in range(3):
        offset = features.numpy() - means[k]
        np.testing.assert_allclose(
            distances[:, k], np.einsum("rd,de,re->r", offset, inverse, offset), rtol=1e-6
        )


def test_an_unknown_estimator_is_named():
    with pytest.raises(ValueError, match="covariance_estimator must be one of .*'shrunk'"):
        ClassFeatureQueues(2, 4, 3, covariance_estimator="shrunk")


def test_the_classifier_queues_take_the_configured_estimator():
    from vos_det.classification import VOSClassifier, VOSClassifierConfig

    with pytest.raises(ValueError, match="covariance must be one of ridge, ledoit_wolf, oas"):
        VOSClassifierConfig(covariance="shrunk")
    model = VOSClassifier(
        torch.nn.Identity(), backbone_dim=4, num_classes=2, config=VOSClassifierConfig(covariance="oas")
    )
    assert model.queues.covariance_estimator == "oas"
