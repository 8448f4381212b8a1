"""The open-set tables of a benchmark grid: per method and flag, the open-set metrics of the
mixed sets (mean ± std over the seeds), and their paired differences to a baseline.

Rows are ``results.json`` rows (:mod:`.seed_report`), whose ``open_set`` entry maps a mixed set
to its flags ("no flag", then each score) and their metrics
(:mod:`vos_det.evaluation.open_set`).
"""

from typing import Callable, Dict, List, Sequence, Tuple

from ..evaluation.open_set import METRIC_HEADERS
from .seed_report import difference_cell, method_table, summary_cell

__all__ = ["SCALES", "mixed_sets", "open_set_difference_table", "open_set_summary_table"]


def mixed_sets(rows: Sequence[dict]) -> List[str]:
    """The mixed (open-set) sets of the runs, in first-seen order."""
    return list(dict.fromkeys(name for row in rows for name in row.get("open_set", {})))


#: Metrics shown scaled, with the scale in their header: WI is a fraction of about 0.01-0.3,
#: shown x100 (as opendet2 prints it) so that two decimals keep its digits.
SCALES = {"WI": 100.0}


def _header(key: str, name: str) -> str:
    """A metric's column header, with its scale."""
    return f"{name} x{SCALES[key]:g}" if key in SCALES else name


def _values(rows: Sequence[dict], method: str, flag: str, mixed_set: str, metric: str) -> Dict:
    """Seed -> ``metric`` (scaled by :data:`SCALES`) of a method's runs with ``flag`` on
    ``mixed_set`` (seeds without a value left out)."""
    values = {}
    for row in rows:
        if row["method"] == method:
            value = row.get("open_set", {}).get(mixed_set, {}).get(flag, {}).get(metric)
            if value is not None:
                values[row["seed"]] = value * SCALES.get(metric, 1.0)
    return values


def _flags(rows: Sequence[dict], method: str, mixed_set: str) -> List[str]:
    """The flags with metrics on ``mixed_set`` in some run of ``method``."""
    return list(
        dict.fromkeys(
            flag
            for row in rows
            if row["method"] == method
            for flag in row.get("open_set", {}).get(mixed_set, {})
        )
    )


def _table(
    rows: Sequence[dict],
    mixed_set: str,
    cell: Callable[[str, str, str, int], str],
    header: Callable[[str], str],
    skip: Tuple[str, str] = ("", ""),
) -> str:
    """:func:`~.seed_report.method_table` with a row per method and flag (but ``skip``), a column
    per metric of :data:`~vos_det.evaluation.open_set.METRIC_HEADERS` (``header`` of its name
    with its scale); ``cell(method, flag, metric, seeds of the method)``."""
    names = dict(METRIC_HEADERS)
    return method_table(
        rows,
        lambda method: _flags(rows, method, mixed_set),
        list(names),
        cell,
        key_header="flagged by",
        metric_header=lambda key: header(_header(key, names[key])),
        skip=skip,
    )


def open_set_summary_table(rows: Sequence[dict], mixed_set: str) -> str:
    """Per method and flag, the mean ± standard deviation over seeds of every open-set metric.

    Args:
        rows (Sequence[dict]): the runs.
        mixed_set (str): the mixed set.

    Returns:
        str: a Markdown table; a cell notes "(n=k)" when only k seeds have a value.
    """
    return _table(
        rows,
        mixed_set,
        lambda method, flag, metric, seeds: summary_cell(
            _values(rows, method, flag, mixed_set, metric), seeds
        ),
        header=str,
    )


def open_set_difference_table(
    rows: Sequence[dict], mixed_set: str, baseline: Tuple[str, str], confidence: float = 0.95
) -> str:
    """Per method and flag, the mean paired difference of every open-set metric to the
    baseline's (same seed), ± the half-width of its ``confidence`` t-interval, in bold when it
    excludes 0.

    Args:
        rows (Sequence[dict]): the runs.
        mixed_set (str): the mixed set.
        baseline (tuple[str, str]): (method, flag), e.g. ("vanilla", "energy").
        confidence (float): coverage of the intervals.

    Returns:
        str: a Markdown table without the baseline's own row.

    Raises:
        ValueError: if the baseline has no open-set metrics on ``mixed_set``.
    """
    base_method, base_flag = baseline
    if not any(_values(rows, base_method, base_flag, mixed_set, key) for key, _ in METRIC_HEADERS):
        raise ValueError(f"The baseline {base_method} + {base_flag} has no metrics on {mixed_set}.")
    return _table(
        rows,
        mixed_set,
        lambda method, flag, metric, seeds: difference_cell(
            _values(rows, method, flag, mixed_set, metric),
            _values(rows, base_method, base_flag, mixed_set, metric),
            seeds,
            confidence,
        ),
        header=lambda name: f"Δ{name}",
        skip=baseline,
    )
