"""Tables and plots comparing methods trained with several seeds.

Everything here reads *rows*: one dict per run, as ``tools/benchmark.py`` writes them to
``results.json``::

    {"method": "vos", "seed": 1, ...,                 # identity, wall time (not read here)
     "protocol": "paper", "id_dataset": "synthetic_id_test",
     "id_metrics": {"AP": 39.9, "AP50": 59.8, "AP75": 49.2},
     "fpr_key": "FPR95",
     "ood": {"synthetic_ood_test": {"energy": {"FPR95": 92.5, "AUROC": 54.4, "AUPR": 49.4}}}}

All metrics are in percent. ID metrics belong to a method, OOD metrics to a method and a score.
Plots are drawn on matplotlib's Agg canvas without pyplot, so no global backend is changed.
"""

import itertools
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tabulate import tabulate

from ..core.ood_metrics import roc_curve
from ..evaluation.output_folder import EvaluationRun
from ..evaluation.protocol import ProtocolResult, keep_boxes
from .seed_statistics import paired_t_interval, summarize

__all__ = [
    "common_value",
    "difference_cell",
    "method_table",
    "metric_names",
    "ood_sets",
    "paired_difference_table",
    "plot_fpr",
    "plot_roc_curves_of_methods",
    "result_row",
    "summary_cell",
    "summary_table",
]

ID_METRICS = ("AP", "AP50")  # the ID metrics the tables compare
OOD_METRICS = ("AUROC", "AUPR")  # after the FPR


def result_row(result: ProtocolResult) -> dict:
    """The metrics of one run, as a row holds them (without the run's identity).

    Args:
        result (ProtocolResult): the run's ``ood_results.json``.

    Returns:
        dict: ``protocol``, ``id_dataset``, ``id_metrics``, ``fpr_key``, ``ood`` (set ->
        score -> metric) and ``open_set`` (mixed set -> flag, "no flag" or a score -> metric).
    """
    return {
        "protocol": result.protocol,
        "id_dataset": result.id_dataset,
        "id_metrics": dict(result.id_metrics),
        "fpr_key": result.fpr_key,
        "ood": {name: entry.metrics for name, entry in result.ood.items()},
        "open_set": {name: entry.metrics for name, entry in result.open_set.items()},
    }


def common_value(rows: Sequence[dict], key: str) -> str:
    """The value of ``key`` shared by all rows, e.g. "protocol", "fpr_key" or "id_dataset".

    Raises:
        ValueError: if the rows differ there (their metrics are not comparable).
    """
    values = _unique(row[key] for row in rows)
    if len(values) != 1:
        raise ValueError(
            f"The runs differ in {key} ({values}): their metrics are not comparable; evaluate "
            "them alike (VOS.EVAL.PROTOCOL, VOS.EVAL.TPR)."
        )
    return values[0]


def metric_names(rows: Sequence[dict]) -> Tuple[str, ...]:
    """The compared metrics: "AP", "AP50", the FPR (e.g. "FPR95"), "AUROC", "AUPR".

    Raises:
        ValueError: if the runs read the FPR at different TPRs.
    """
    return (*ID_METRICS, common_value(rows, "fpr_key"), *OOD_METRICS)


def _unique(items) -> list:
    """The items without repetitions, in first-seen order."""
    return list(dict.fromkeys(items))


def ood_sets(rows: Sequence[dict]) -> List[str]:
    """The OOD sets of the runs, in first-seen order."""
    return _unique(name for row in rows for name in row["ood"])


def _methods(rows: Sequence[dict]) -> List[str]:
    """The methods of the runs, in first-seen order."""
    return _unique(row["method"] for row in rows)


def _scores(rows: Sequence[dict], method: str, ood_set: str) -> List[str]:
    """The scores with metrics on ``ood_set`` in some run of ``method``."""
    return _unique(
        score for row in rows if row["method"] == method for score in row["ood"].get(ood_set, {})
    )


def _values(rows: Sequence[dict], method: str, score: str, ood_set: str, metric: str) -> Dict:
    """Seed -> the value of ``metric`` for a method (and score, for OOD metrics); seeds without
    a value are left out."""
    values = {}
    for row in rows:
        if row["method"] != method:
            continue
        if metric in ID_METRICS:
            value = row["id_metrics"].get(metric)
        else:
            value = row["ood"].get(ood_set, {}).get(score, {}).get(metric)
        if value is not None:
            values[row["seed"]] = value
    return values


def _count_note(n: int, total: int) -> str:
    """The note " (n=2)" when only ``n`` of a method's ``total`` seeds have a value, else ""."""
    return f" (n={n})" if n < total else ""


def summary_cell(values: Mapping[int, float], total: int) -> str:
    """The cell "mean ± std" over the seeds ("mean" alone for one seed, "-" for none)."""
    if not values:
        return "-"
    summary = summarize(list(values.values()))
    spread = f" ± {summary.std:.2f}" if summary.n > 1 else ""
    return f"{summary.mean:.2f}{spread}{_count_note(summary.n, total)}"


def difference_cell(
    values: Mapping[int, float], baseline: Mapping[int, float], total: int, confidence: float
) -> str:
    """The cell "mean ± half-width" of the paired t-interval, in bold when it excludes 0; "-"
    for fewer than 2 seeds with both values."""
    seeds = [seed for seed in values if seed in baseline]
    if len(seeds) < 2:
        return "-"
    interval = paired_t_interval(
        [values[seed] for seed in seeds], [baseline[seed] for seed in seeds], confidence
    )
    text = f"{interval.mean:+.2f} ± {interval.half_width:.2f}"
    return (f"**{text}**" if interval.excludes_zero else text) + _count_note(interval.n, total)


def method_table(
    rows: Sequence[dict],
    keys_of: Callable[[str], Sequence[str]],
    metrics: Sequence[str],
    cell: Callable[[str, str, str, int], str],
    key_header: str = "score",
    metric_header: Callable[[str], str] = str,
    skip: Tuple[str, str] = ("", ""),
) -> str:
    """A Markdown table with a row per method and key (but ``skip``) and a column per metric.

    Args:
        rows (Sequence[dict]): the runs.
        keys_of (callable): ``keys_of(method)`` -> the method's row keys (e.g. its scores).
        metrics (Sequence[str]): the metrics, one column each.
        cell (callable): ``cell(method, key, metric, seeds of the method)`` -> its text.
        key_header (str): the header of the key column.
        metric_header (callable): a metric's column header.
        skip (tuple[str, str]): a (method, key) left out.

    Returns:
        str: the table.
    """
    table = []
    for method in _methods(rows):
        seeds = sum(row["method"] == method for row in rows)
        for key in keys_of(method):
            if (method, key) != tuple(skip):
                table.append([method, key, seeds, *(cell(method, key, m, seeds) for m in metrics)])
    headers = ["method", key_header, "seeds", *map(metric_header, metrics)]
    alignment = ("left", "left", *["right"] * (len(headers) - 2))
    return tabulate(table, headers=headers, tablefmt="pipe", colalign=alignment)


def _method_score_table(
    rows: Sequence[dict],
    ood_set: str,
    cell: Callable[[str, str, str, int], str],
    metric_header: Callable[[str], str] = str,
    skip: Tuple[str, str] = ("", ""),
) -> str:
    """:func:`method_table` with a row per method and score on ``ood_set`` and a column per
    metric of :func:`metric_names`."""
    return method_table(
        rows,
        lambda method: _scores(rows, method, ood_set),
        metric_names(rows),
        cell,
        metric_header=metric_header,
        skip=skip,
    )


def summary_table(rows: Sequence[dict], ood_set: str) -> str:
    """Per method and score, the mean ± standard deviation over seeds of every metric.

    Args:
        rows (Sequence[dict]): the runs.
        ood_set (str): the OOD set of the OOD metrics.

    Returns:
        str: a Markdown table; a cell notes "(n=k)" when only k seeds have a value.
    """
    return _method_score_table(
        rows,
        ood_set,
        lambda method, score, metric, seeds: summary_cell(
            _values(rows, method, score, ood_set, metric), seeds
        ),
    )


def paired_difference_table(
    rows: Sequence[dict], ood_set: str, baseline: Tuple[str, str], confidence: float = 0.95
) -> str:
    """Per method and score, the mean paired difference to the baseline and its t-interval.

    On every seed, a method's metric (for its score) minus the baseline method's metric (for the
    baseline score) on the same seed; the cell shows the mean difference ± the half-width of
    its ``confidence`` t-interval, in bold when the interval excludes 0.

    Args:
        rows (Sequence[dict]): the runs.
        ood_set (str): the OOD set of the OOD metrics.
        baseline (tuple[str, str]): (method, score), e.g. ("vanilla", "energy").
        confidence (float): coverage of the intervals.

    Returns:
        str: a Markdown table without the baseline's own row.

    Raises:
        ValueError: if the baseline has no metrics on ``ood_set``.
    """
    base_method, base_score = baseline
    if base_score not in _scores(rows, base_method, ood_set):
        raise ValueError(
            f"The baseline {base_method} + {base_score} has no metrics on {ood_set}; its "
            f"scores there: {_scores(rows, base_method, ood_set)}."
        )
    return _method_score_table(
        rows,
        ood_set,
        lambda method, score, metric, seeds: difference_cell(
            _values(rows, method, score, ood_set, metric),
            _values(rows, base_method, base_score, ood_set, metric),
            seeds,
            confidence,
        ),
        metric_header=lambda metric: f"Δ{metric}",
        skip=baseline,
    )


def _save(figure: Figure, path: str) -> None:
    """Render a figure on an Agg canvas into a PNG file."""
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _score_colours(scores: Sequence[str]) -> Dict[str, str]:
    """One matplotlib cycle colour per score."""
    return {score: f"C{index % 10}" for index, score in enumerate(scores)}


def plot_fpr(rows: Sequence[dict], ood_set: str, path: str) -> None:
    """Bars of the FPR per method and score (mean over seeds, error bar = standard deviation,
    dots = the seeds), written as a PNG.

    Args:
        rows (Sequence[dict]): the runs.
        ood_set (str): the OOD set.
        path (str): the PNG file.
    """
    fpr = metric_names(rows)[len(ID_METRICS)]
    methods = _methods(rows)
    scores = _unique(score for method in methods for score in _scores(rows, method, ood_set))
    colours = _score_colours(scores)
    width = 0.8 / len(scores)
    figure = Figure(figsize=(max(6.0, 1.5 * len(methods) + 2), 4.5))
    axes = figure.add_subplot()
    labelled = set()  # scores already in the legend
    for index, method in enumerate(methods):
        for score in _scores(rows, method, ood_set):
            values = list(_values(rows, method, score, ood_set, fpr).values())
            summary = summarize(values)
            x = index - 0.4 + width * (scores.index(score) + 0.5)
            axes.bar(
                x,
                summary.mean,
                width,
                yerr=summary.std if summary.n > 1 else None,
                color=colours[score],
                capsize=3,
                label=None if score in labelled else score,
            )
            labelled.add(score)
            axes.plot([x] * len(values), values, "k.", markersize=4)
    axes.set_xticks(range(len(methods)), methods)
    axes.set_ylabel(f"{fpr} (%), lower is better")
    axes.set_title(f"{fpr} on {ood_set}\nmean ± std over the seeds; dots: the seeds", fontsize=10)
    axes.legend(fontsize="small", loc="best")
    _save(figure, path)


def plot_roc_curves_of_methods(runs: Mapping[str, EvaluationRun], ood_set: str, path: str) -> None:
    """ROC curves (ID = positive, kept boxes) of every method and score on ``ood_set``, one
    colour per score and one line style per method, written as a PNG.

    Args:
        runs (Mapping[str, EvaluationRun]): method -> one of its runs (e.g. the first seed).
        ood_set (str): the OOD set.
        path (str): the PNG file.
    """
    colours = _score_colours(
        _unique(score for run in runs.values() for score in _metrics_on(run, ood_set))
    )
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    styles = itertools.cycle(["-", "--", ":", "-."])
    for (method, run), style in zip(runs.items(), styles):
        result = run.result
        kept_id = keep_boxes(run.id_box_scores, result.threshold.value, result.protocol)
        kept_ood = keep_boxes(run.ood_box_scores[ood_set], result.threshold.value, result.protocol)
        for score, metrics in _metrics_on(run, ood_set).items():
            fpr, tpr = roc_curve(kept_id[score], kept_ood[score])
            label = (
                f"{method} {score}: {result.fpr_key} {metrics[result.fpr_key]:.1f}, "
                f"AUROC {metrics['AUROC']:.1f}"
            )
            axes.plot(fpr, tpr, style, color=colours[score], label=label)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel(f"false-positive rate (OOD {ood_set})")
    axes.set_ylabel("true-positive rate (ID)")
    axes.set_title(f"ROC, {ood_set}")
    axes.legend(fontsize="x-small", loc="lower right")
    _save(figure, path)


def _metrics_on(run: EvaluationRun, ood_set: str) -> Dict[str, Dict[str, float]]:
    """Score -> metrics of a run on an OOD set (empty when the run has none there)."""
    entry = run.result.ood.get(ood_set)
    return entry.metrics if entry is not None else {}
