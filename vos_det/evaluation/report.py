"""Presentation of OOD results: the Markdown table and the PNG plots.

Plots are drawn on matplotlib's Agg canvas without pyplot, so no global backend is changed.
"""

import os
from typing import Dict, List, Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tabulate import tabulate

from ..core.ood_metrics import roc_curve
from .open_set import METRIC_HEADERS
from .output_folder import EvaluationRun
from .protocol import ID_METRIC_NAMES, KEEP_RULES, PAPER_SCORE, ProtocolResult, keep_boxes
from .score_collector import BoxScores

__all__ = ["format_open_set_table", "format_table", "plot_roc_curves", "plot_score_histograms"]


def format_table(results: Mapping[str, ProtocolResult]) -> str:
    """Render one or several runs side by side.

    Two tables: per run the ID set, protocol, threshold, kept/all ID boxes and AP/AP50/AP75;
    then one row per OOD set and score with FPR95/AUROC/AUPR (in percent; the FPR named after
    each run's TPR) of each run; "-" where a run has no value; then, with mixed sets,
    :func:`format_open_set_table`. When every run used the "paper"
    protocol, the rows of :data:`~vos_det.evaluation.protocol.PAPER_SCORE` read "energy (paper)":
    the numbers to compare with the paper's tables. Runs of different protocols keep their
    protocol in their column headers, and a note under the tables says that their numbers are
    not comparable.

    Args:
        results (Mapping[str, ProtocolResult]): run name -> its results (one run: no run names
            in the headers).

    Returns:
        str: the tables, in Markdown pipe format.
    """
    runs = list(results)
    run_column = ["run"] if len(runs) > 1 else []
    id_rows = []
    for run, result in results.items():
        row = [result.id_dataset, result.protocol, result.threshold.value]
        row += [f"{result.id_kept}/{result.id_boxes}"]
        row += [result.id_metrics.get(key) for key in ID_METRIC_NAMES]
        id_rows.append(([run] if run_column else []) + row)
    id_table = tabulate(
        id_rows,
        headers=run_column + ["ID set", "protocol", "threshold", "ID boxes kept", *ID_METRIC_NAMES],
        tablefmt="pipe",
        floatfmt=[".4f"] * (len(run_column) + 3) + [".2f"] * (1 + len(ID_METRIC_NAMES)),
        missingval="-",
    )
    protocols = {run: result.protocol for run, result in results.items()}
    mixed = len(set(protocols.values())) > 1
    paper_runs = set(protocols.values()) == {"paper"}
    row_keys = []  # (OOD set, score), first-seen order over the runs
    for result in results.values():
        for name in result.ood:
            row_keys += [(name, score) for score in result.scores if (name, score) not in row_keys]
    ood_rows = []
    for name, score in row_keys:
        row = [name, f"{score} (paper)" if paper_runs and score == PAPER_SCORE else score]
        for result in results.values():
            metrics = result.ood[name].metrics.get(score, {}) if name in result.ood else {}
            row += [metrics.get(key) for key in (result.fpr_key, "AUROC", "AUPR")]
        ood_rows.append(row)
    metric_headers = [
        (f"{run} ({result.protocol}) {key}" if mixed else f"{run} {key}") if len(runs) > 1 else key
        for run, result in results.items()
        for key in (result.fpr_key, "AUROC", "AUPR")
    ]
    ood_table = tabulate(
        ood_rows,
        headers=["OOD set", "score", *metric_headers],
        tablefmt="pipe",
        floatfmt=".2f",
        missingval="-",
    )
    note = ""
    if mixed:
        listed = ", ".join(f"{run}: {protocol}" for run, protocol in protocols.items())
        note = (
            f"\n\nNote: the runs were evaluated with different protocols ({listed}); they keep "
            "other boxes and read FPR elsewhere, so their numbers are not comparable. Recompute "
            "them with one protocol (--protocol)."
        )
    open_set_table = format_open_set_table(results)
    open_set_table = f"\n\n{open_set_table}" if open_set_table else ""
    return f"{id_table}\n\n{ood_table}{open_set_table}{note}"


def format_open_set_table(results: Mapping[str, ProtocolResult]) -> str:
    """The open-set table of one or several runs: one row per mixed set and flag (``no flag``,
    then each score), with the metrics of :data:`~vos_det.evaluation.open_set.METRIC_HEADERS` of
    each run (APs and recall in percent, WI a fraction, A-OSE a count); "-" where a run has no
    value.

    Args:
        results (Mapping[str, ProtocolResult]): run name -> its results.

    Returns:
        str: the table in Markdown pipe format, with a line giving each set's unknown objects;
        "" when no run has a mixed set.
    """
    row_keys = []  # (mixed set, flag), first-seen order over the runs
    for result in results.values():
        for name, open_set in result.open_set.items():
            row_keys += [(name, row) for row in open_set.metrics if (name, row) not in row_keys]
    if not row_keys:
        return ""
    rows = []
    for name, flag in row_keys:
        row = [name, flag]
        for result in results.values():
            entry = result.open_set.get(name)
            metrics = entry.metrics.get(flag, {}) if entry is not None else {}
            row += [metrics.get(key) for key, _ in METRIC_HEADERS]
        rows.append(row)
    headers = [
        f"{run} {header}" if len(results) > 1 else header
        for run in results
        for _, header in METRIC_HEADERS
    ]
    counts = {
        name: (entry.known_objects, entry.unknown_objects)
        for result in results.values()
        for name, entry in result.open_set.items()
    }
    objects = "; ".join(
        f"{name}: {known} known, {unknown} unknown objects"
        for name, (known, unknown) in counts.items()
    )
    formats = {"WI": ".4f", "A-OSE": ".0f"}
    table = tabulate(
        rows,
        headers=["mixed set", "flagged by", *headers],
        tablefmt="pipe",
        floatfmt=["", ""] + [formats.get(key, ".2f") for _ in results for key, _ in METRIC_HEADERS],
        missingval="-",
    )
    return f"{table}\n\nOpen-set metrics (flagged: score below its ID threshold; {objects})."


def _save(figure: Figure, path: str) -> None:
    """Render a figure on an Agg canvas into a PNG file."""
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)


def _kept_boxes(run: EvaluationRun) -> Dict[str, BoxScores]:
    """The kept boxes of the ID set and of every OOD set, by set name."""
    threshold, protocol = run.result.threshold.value, run.result.protocol
    kept = {run.result.id_dataset: keep_boxes(run.id_box_scores, threshold, protocol)}
    kept.update(
        {name: keep_boxes(run.ood_box_scores[name], threshold, protocol) for name in run.result.ood}
    )
    return kept


def plot_score_histograms(run: EvaluationRun, folder: str) -> List[str]:
    """Draw, per score, the density histograms of the kept ID boxes and each OOD set's kept boxes.

    Args:
        run (EvaluationRun): the run's results and per-box arrays.
        folder (str): where the PNGs go (created).

    Returns:
        list[str]: the written files.
    """
    os.makedirs(folder, exist_ok=True)
    result = run.result
    kept = {name: arrays for name, arrays in _kept_boxes(run).items() if len(arrays["class_prob"])}
    paths = []
    for score in result.scores:
        values = np.concatenate([arrays[score] for arrays in kept.values()])
        values = values[np.isfinite(values)]
        bins = np.histogram_bin_edges(values, bins=50)
        figure = Figure(figsize=(6, 4))
        axes = figure.add_subplot()
        for name, arrays in kept.items():
            role = "ID" if name == result.id_dataset else "OOD"
            axes.hist(
                arrays[score],
                bins=bins,
                density=True,
                histtype="step",
                label=f"{role} {name} ({len(arrays[score])})",
            )
        axes.set_xlabel(f"{score} score (higher = more in-distribution)")
        axes.set_ylabel("density")
        keep_text = KEEP_RULES[result.protocol][1]
        axes.set_title(f"{score}: kept boxes, {keep_text} >= {result.threshold.value:.3f}")
        axes.legend(fontsize="small")
        figure.tight_layout()
        path = os.path.join(folder, f"hist_{score}.png")
        _save(figure, path)
        paths.append(path)
    return paths


def plot_roc_curves(run: EvaluationRun, folder: str) -> List[str]:
    """Draw, per OOD set with metrics, the ROC curves of every evaluated score (ID = positive).

    Args:
        run (EvaluationRun): the run's results and per-box arrays.
        folder (str): where the PNGs go (created).

    Returns:
        list[str]: the written files.
    """
    os.makedirs(folder, exist_ok=True)
    result = run.result
    kept = _kept_boxes(run)
    paths = []
    for name, ood_result in result.ood.items():
        if not ood_result.metrics:
            continue
        figure = Figure(figsize=(5, 5))
        axes = figure.add_subplot()
        for score, metrics in ood_result.metrics.items():
            fpr, tpr = roc_curve(kept[result.id_dataset][score], kept[name][score])
            axes.plot(
                fpr,
                tpr,
                label=f"{score}: AUROC {metrics['AUROC']:.1f}, "
                f"{result.fpr_key} {metrics[result.fpr_key]:.1f}",
            )
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axes.axhline(result.tpr, color="grey", linestyle="--", linewidth=1)
        axes.set_xlabel(f"false-positive rate (OOD {name})")
        axes.set_ylabel(f"true-positive rate (ID {result.id_dataset})")
        axes.set_title(f"ROC, {name}")
        axes.legend(fontsize="small", loc="lower right")
        figure.tight_layout()
        path = os.path.join(folder, f"roc_{name}.png")
        _save(figure, path)
        paths.append(path)
    return paths
