"""Outlier synthesis: the fast sampler against the brute-force oracle, quantiles, numerics."""

import logging

import numpy as np
import pytest
import scipy.stats
import torch

from vos_det.core.linalg import robust_cholesky
from vos_det.core.queues import ClassFeatureQueues
from vos_det.core.virtual_outliers import (
    chi2_upper_quantile,
    sample_virtual_outliers,
    sample_virtual_outliers_bruteforce,
)

NUM_CANDIDATES = 2000
NUM_CLASSES = 3
# Fixed seeds make the statistical tests deterministic; with correct samplers the p-values
# are far above the threshold, and the negative controls fall far below it.
P_MIN = 1e-3


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[NUM_CLASSES, d] well-separated means and a random anisotropic [d, d] covariance."""
    generator = _generator(seed)
    means = 3.0 * torch.randn(NUM_CLASSES, dim, generator=generator, dtype=torch.float64)
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return means, mixing @ mixing.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)


class Draws:
    """Outliers of both samplers for one Gaussian, the classes repeated to get many draws."""

    def __init__(self, dim: int, num_select: int, repeats: int):
        means, self.cov = _gaussian(dim)
        self.means = means.repeat(repeats, 1)
        self.factor = robust_cholesky(self.cov)
        self.num_select = num_select
        self.fast = sample_virtual_outliers(
            self.means, self.cov, NUM_CANDIDATES, num_select, _generator(1)
        )
        self.oracle = sample_virtual_outliers_bruteforce(
            self.means, self.cov, NUM_CANDIDATES, num_select, _generator(2)
        )

    def whitened(self, draw: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        """[M, d] ``L^-1 (v - mu_label)`` of outliers v."""
        outliers, labels = draw
        centred = outliers.double() - self.means[labels]
        return torch.linalg.solve_triangular(self.factor, centred.T, upper=False).T.numpy()

    def radii(self, draw) -> np.ndarray:
        """[M] Mahalanobis radii of outliers."""
        return np.linalg.norm(self.whitened(draw), axis=1)


@pytest.fixture(scope="module", params=[(8, 1, 300), (32, 5, 200)], ids=["d8-s1", "d32-s5"])
def draws(request) -> Draws:
    return Draws(*request.param)


def test_output_shapes_labels_and_dtype(draws):
    for outliers, labels in (draws.fast, draws.oracle):
        num_outliers = len(draws.means) * draws.num_select
        assert outliers.shape == (num_outliers, draws.means.shape[1])
        assert outliers.dtype == torch.float32 and labels.dtype == torch.int64
        expected = torch.arange(len(draws.means)).repeat_interleave(draws.num_select)
        assert torch.equal(labels, expected)


def test_mahalanobis_radii_match_oracle(draws):
    assert scipy.stats.ks_2samp(draws.radii(draws.fast), draws.radii(draws.oracle)).pvalue > P_MIN


def test_negative_control_random_candidates_fail_the_radius_test(draws):
    """Plain Gaussian samples (random candidates, not the tail) are far from the oracle."""
    noise = torch.randn(draws.means.shape, generator=_generator(3), dtype=torch.float64)
    random_candidates = (draws.means + noise @ draws.factor.T, torch.arange(len(draws.means)))
    result = scipy.stats.ks_2samp(draws.radii(random_candidates), draws.radii(draws.oracle))
    assert result.statistic > 0.9 and result.pvalue < 1e-12


def test_negative_control_wrong_candidate_count_fails_the_radius_test(draws):
    """The radius test resolves a factor of two in the number of candidates."""
    half = sample_virtual_outliers(
        draws.means, draws.cov, NUM_CANDIDATES // 2, draws.num_select, _generator(4)
    )
    assert scipy.stats.ks_2samp(draws.radii(half), draws.radii(draws.oracle)).pvalue < 1e-8


def test_whitened_directions_are_isotropic(draws):
    for draw in (draws.fast, draws.oracle):
        whitened = draws.whitened(draw)
        directions = whitened / np.linalg.norm(whitened, axis=1, keepdims=True)
        count, dim = directions.shape
        # count * d * |mean direction|^2 is approximately chi-square with d degrees of freedom.
        mean_statistic = count * dim * np.sum(directions.mean(0) ** 2)
        assert scipy.stats.chi2.sf(mean_statistic, dim) > P_MIN
        # For isotropic directions the second moment deviates from I / d by about 1 / sqrt(count)
        # in Frobenius norm (d^2 entries of variance ~ 1 / (d^2 count) each).
        second_moment = directions.T @ directions / count
        deviation = np.linalg.norm(second_moment - np.eye(dim) / dim)
        assert deviation < 1.5 / np.sqrt(count)


def test_projections_match_oracle(draws):
    """Projections of ``v - mu`` on random axes: same law, same mean and variance."""
    axes = np.random.default_rng(5).normal(size=(3, draws.means.shape[1]))
    for axis in axes:
        fast, oracle = (
            (outliers.double() - draws.means[labels]).numpy() @ axis
            for outliers, labels in (draws.fast, draws.oracle)
        )
        assert scipy.stats.ks_2samp(fast, oracle).pvalue > P_MIN
        assert scipy.stats.ttest_ind(fast, oracle).pvalue > P_MIN
        assert scipy.stats.levene(fast, oracle).pvalue > P_MIN


def _fast_radii(dim: int, num_candidates: int, num_select: int, num_classes: int) -> np.ndarray:
    """Mahalanobis radii of fast-sampler outliers for identity covariance and zero means."""
    outliers, _ = sample_virtual_outliers(
        torch.zeros(num_classes, dim), torch.eye(dim), num_candidates, num_select, _generator(6)
    )
    ridge = 1.0 + 1e-4  # robust_cholesky adds eps to the covariance
    return np.linalg.norm(outliers.double().numpy(), axis=1) / np.sqrt(ridge)


def _max_of_chi_cdf(radius: np.ndarray, dim: int, count: int) -> np.ndarray:
    """CDF of the largest of ``count`` iid chi(dim) variables."""
    return scipy.stats.chi.cdf(radius, dim) ** count


def test_top_radius_follows_exact_law_of_the_maximum():
    """The largest of N iid chi(d) radii has CDF F(r)^N; checked against theory, not an oracle."""
    dim = 16
    radii = _fast_radii(dim, NUM_CANDIDATES, 1, 3000)
    exact = scipy.stats.kstest(radii, _max_of_chi_cdf, args=(dim, NUM_CANDIDATES))
    assert exact.pvalue > P_MIN
    wrong_count = scipy.stats.kstest(radii, _max_of_chi_cdf, args=(dim, NUM_CANDIDATES // 2))
    assert wrong_count.pvalue < 1e-8


def test_tail_stays_exact_for_astronomically_many_candidates():
    """N = 1e15: the upper-tail probabilities (~1e-15) must not be lost to cancellation."""
    dim, count = 16, 10**15
    radii = _fast_radii(dim, count, 1, 3000)

    def max_cdf(radius):  # F(r)^N = exp(N log(1 - sf(r))), evaluated without cancellation
        return np.exp(count * np.log1p(-scipy.stats.chi.sf(radius, dim)))

    assert scipy.stats.kstest(radii, max_cdf).pvalue > P_MIN


def test_selecting_every_candidate_gives_plain_chi_radii():
    """With s = N the sampler returns all candidates: radii are chi(d) distributed."""
    dim = 8
    radii = _fast_radii(dim, 3, 3, 1000)
    assert scipy.stats.kstest(radii, scipy.stats.chi(dim).cdf).pvalue > P_MIN


def test_same_generator_seed_gives_same_outliers():
    means, cov = _gaussian(6)
    first = sample_virtual_outliers(means, cov, 100, 2, _generator(7))
    second = sample_virtual_outliers(means, cov, 100, 2, _generator(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("dof", [2, 64, 1024, 2048])
def test_chi2_upper_quantile_matches_scipy(dof):
    q = np.concatenate([np.logspace(-8, np.log10(0.9), 60), [1e-300, 1e-100, 1e-20]])
    got = chi2_upper_quantile(torch.tensor(q), dof).numpy()
    np.testing.assert_allclose(got, scipy.stats.chi2.isf(q, dof), rtol=1e-9)


def test_chi2_upper_quantile_edges_and_errors():
    assert chi2_upper_quantile(torch.tensor([1.0]), 5).item() == 0.0
    assert chi2_upper_quantile(torch.tensor([0.5], dtype=torch.float32), 3).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        chi2_upper_quantile(torch.tensor([0.0]), 5)
    with pytest.raises(ValueError, match="dof"):
        chi2_upper_quantile(torch.tensor([0.5]), 0)


def test_robust_cholesky_of_positive_definite_matrix_adds_the_ridge():
    _, cov = _gaussian(5)
    expected = torch.linalg.cholesky(cov + 1e-3 * torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(robust_cholesky(cov, eps=1e-3), expected)


def test_robust_cholesky_escalates_jitter_on_indefinite_matrix(caplog):
    cov = torch.diag(torch.tensor([1.0, 2.0, -0.05], dtype=torch.float64))
    with caplog.at_level(logging.DEBUG, logger="vos_det.core.linalg"):
        factor = robust_cholesky(cov)
    assert "Cholesky needed a ridge" in caplog.text
    assert torch.equal(factor, factor.tril()) and bool((factor.diagonal() > 0).all())
    ridge = (factor @ factor.T - cov).diagonal()
    assert torch.allclose(ridge, ridge[0].expand(3)) and 0.05 < ridge[0] < 1.0


def test_robust_cholesky_falls_back_to_clamped_eigenvalues(caplog):
    eigenvectors = torch.linalg.qr(torch.randn(4, 4, generator=_generator(8))).Q.double()
    eigenvalues = torch.tensor([3.0, 1.0, -2.0, 0.0], dtype=torch.float64)
    cov = eigenvectors @ torch.diag(eigenvalues) @ eigenvectors.T
    with caplog.at_level(logging.WARNING, logger="vos_det.core.linalg"):
        factor = robust_cholesky(cov, eps=1e-3, max_tries=1)
    assert "clamping eigenvalues" in caplog.text
    assert torch.equal(factor, factor.tril()) and bool((factor.diagonal() > 0).all())
    floor = 1e-3 * float(cov.diagonal().abs().mean())  # eps times the mean |diagonal|
    clamped = eigenvectors @ torch.diag(eigenvalues.clamp(min=floor)) @ eigenvectors.T
    torch.testing.assert_close(factor @ factor.T, clamped)


@pytest.mark.parametrize(
    "cov, message",
    [
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or Inf"),
        (torch.tensor([[float("inf"), 0.0], [0.0, 1.0]]), "NaN or Inf"),
        (torch.ones(2, 3), "square"),
    ],
)
def test_robust_cholesky_rejects_bad_input(cov, message):
    with pytest.raises(ValueError, match=message):
        robust_cholesky(cov)


def _queue_statistics(features: torch.Tensor, labels: torch.Tensor, num_classes: int):
    queues = ClassFeatureQueues(num_classes, 8, features.shape[1])
    queues.push(features, labels)
    return queues.class_means(), queues.covariance()


@pytest.mark.parametrize(
    "dim, features",
    [
        (64, torch.randn(6, 64, generator=_generator(9))),  # rank-deficient scatter
        (16, torch.ones(6, 16).mul_(1e3)),  # duplicated vectors: zero scatter
        (2048, torch.randn(6, 2048, generator=_generator(10)).mul_(5.0).add_(2.0)),
    ],
    ids=["rank-deficient", "duplicates", "d2048-few-vectors"],
)
def test_degenerate_queues_give_finite_outliers(dim, features):
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    means, cov = _queue_statistics(features, labels, 2)
    for sampler in (sample_virtual_outliers, sample_virtual_outliers_bruteforce):
        outliers, _ = sampler(means, cov, 50, 2, _generator(11))
        assert bool(torch.isfinite(outliers).all())


def test_sampler_survives_singular_covariance_without_ridge():
    """With eps = 0 and a rank-one covariance the Cholesky escalation keeps outputs finite."""
    direction = torch.randn(32, 1, generator=_generator(12), dtype=torch.float64)
    outliers, _ = sample_virtual_outliers(
        torch.zeros(2, 32), direction @ direction.T, 1000, 3, _generator(13), eps=0.0
    )
    assert bool(torch.isfinite(outliers).all())


@pytest.mark.parametrize(
    "means, cov, num_candidates, num_select, message",
    [
        (torch.zeros(2, 3), torch.eye(3), 10, 11, "num_select"),
        (torch.zeros(2, 3), torch.eye(3), 10, 0, "num_select"),
        (torch.zeros(2, 3), torch.eye(3), 0, 1, "num_candidates"),
        (torch.zeros(2, 3), torch.eye(4), 10, 1, r"cov must have shape \[3, 3\]"),
        (torch.zeros(3), torch.eye(3), 10, 1, r"means must have shape \[K, d\]"),
    ],
)
def test_samplers_reject_bad_input(means, cov, num_candidates, num_select, message):
    for sampler in (sample_virtual_outliers, sample_virtual_outliers_bruteforce):
        with pytest.raises(ValueError, match=message):
            sampler(means, cov, num_candidates, num_select)
