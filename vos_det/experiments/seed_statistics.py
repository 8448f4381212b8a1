"""Statistics over training seeds: mean and spread, and paired confidence intervals.

A method's metric (e.g. FPR95 in percent) is measured once per training seed. Two methods trained
with the same seeds are compared seed by seed: the differences ``d_i = x_i - b_i`` (method minus
baseline on seed ``i``) share the seed's draw of initial weights and data order, so their spread
is smaller than that of either method. The 95% interval of their mean is Student's t-interval
``mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)``.

Student's t quantile is SciPy's (``scipy.stats.t.ppf``).
"""

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["PairedInterval", "SeedSummary", "paired_t_interval", "summarize"]


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation of one metric over seeds.

    Attributes:
        n (int): number of values (seeds).
        mean (float): their mean.
        std (float): their standard deviation with ``ddof=1``; NaN for a single value.
    """

    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class PairedInterval:
    """The confidence interval of a mean paired difference.

    Attributes:
        n (int): number of pairs (seeds).
        mean (float): mean of the differences (method minus baseline).
        half_width (float): ``t_{(1+confidence)/2, n-1} * sd / sqrt(n)``.
        confidence (float): coverage of the interval, e.g. 0.95.
    """

    n: int
    mean: float
    half_width: float
    confidence: float

    @property
    def low(self) -> float:
        """The lower end of the interval."""
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        """The upper end of the interval."""
        return self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or below zero (the methods differ)."""
        return self.low > 0 or self.high < 0


def _as_values(values: Sequence[float], name: str, minimum: int) -> np.ndarray:
    """Check and convert values to a 1-D float64 array of at least ``minimum`` finite values."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < minimum:
        raise ValueError(
            f"{name} must be a 1-D sequence of at least {minimum} value(s), got shape "
            f"{array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values: {array.tolist()}.")
    return array


def summarize(values: Sequence[float]) -> SeedSummary:
    """Mean and sample standard deviation (``ddof=1``) of one metric over seeds.

    Args:
        values (Sequence[float]): (n,) finite values, n >= 1.

    Returns:
        SeedSummary: n, mean and std (NaN when n == 1).

    Raises:
        ValueError: if ``values`` is empty, not 1-D or not finite.
    """
    array = _as_values(values, "values", 1)
    std = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
    return SeedSummary(n=int(array.size), mean=float(np.mean(array)), std=std)


def paired_t_interval(
    values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> PairedInterval:
    """Student's t confidence interval of the mean of ``values - baseline``, seed by seed.

    Args:
        values (Sequence[float]): (n,) a method's metric per seed, n >= 2.
        baseline (Sequence[float]): (n,) the baseline's metric on the same seeds, same order.
        confidence (float): coverage in (0, 1), e.g. 0.95.

    Returns:
        PairedInterval: ``mean(d) +- t_{(1+confidence)/2, n-1} * sd(d) / sqrt(n)`` with
        ``d = values - baseline`` and ``sd`` the standard deviation with ``ddof=1``.

    Raises:
        ValueError: with fewer than 2 pairs, differing lengths, non-finite values or a
            ``confidence`` outside (0, 1).
    """
    values = _as_values(values, "values", 2)
    baseline = _as_values(baseline, "baseline", 2)
    if values.shape != baseline.shape:
        raise ValueError(
            f"values and baseline must pair up seed by seed, got {values.size} and "
            f"{baseline.size} values."
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    differences = summarize(values - baseline)
    quantile = float(stats.t.ppf(0.5 + confidence / 2, differences.n - 1))
    return PairedInterval(
        n=differences.n,
        mean=differences.mean,
        half_width=quantile * differences.std / math.sqrt(differences.n),
        confidence=confidence,
    )
