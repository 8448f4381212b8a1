"""The report of a benchmark grid (``tools/benchmark.py``): ``report.md`` with its tables and
plots, built from the saved runs and their ``results.json`` rows."""

import argparse
import os
from typing import List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..core.files import atomic_write
from ..evaluation.detectron2_adapters import ground_truth_arrays, ood_object_arrays
from .diagnostics_report import diagnostics_tables, run_diagnostics
from .method_grid import GridRun, Method
from .open_set_report import mixed_sets, open_set_difference_table, open_set_summary_table
from .seed_report import (
    common_value,
    ood_sets,
    paired_difference_table,
    plot_fpr,
    plot_roc_curves_of_methods,
    summary_table,
)
from .seed_statistics import summarize
from .training_log import TRAINING_DIAGNOSTICS, final_training_metrics

__all__ = ["grid_diagnostics", "write_report"]

CONFIDENCE = 0.95
# Scores whose boxes the report breaks down by OOD class and matched object.
DIAGNOSED_SCORES = ("energy", "mahalanobis", "crop_mahalanobis")


def training_diagnostics_table(runs: Sequence[GridRun]) -> str:
    """A Markdown table: per method, each uncertainty-head diagnostic of the last 100 training
    iterations (``vos/*`` in ``metrics.json``), mean ± std over the seeds; "" when no run
    logged any (vanilla only)."""
    per_method: dict = {}
    for run in runs:
        metrics = final_training_metrics(run.folder, list(TRAINING_DIAGNOSTICS))
        for name, value in metrics.items():
            per_method.setdefault(run.method.name, {}).setdefault(name, []).append(value)
    names = [n for n in TRAINING_DIAGNOSTICS if any(n in m for m in per_method.values())]
    if not names:
        return ""
    lines = [
        "| method | " + " | ".join(TRAINING_DIAGNOSTICS[name] for name in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for method, metrics in per_method.items():
        cells = []
        for name in names:
            summary = summarize(metrics[name]) if name in metrics else None
            if summary is None:
                cells.append("-")
            else:
                spread = f" ± {summary.std:.3f}" if summary.n > 1 else ""
                cells.append(f"{summary.mean:.3f}{spread}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_diagnostics(runs: Sequence[GridRun], datasets: dict) -> dict:
    """Per method, each run's :func:`run_diagnostics` (kept boxes against the ground truth)."""
    id_set = datasets["id_test"]
    id_truth = ground_truth_arrays(DatasetCatalog.get(id_set))
    ood_truth = {name: ood_object_arrays(name) for name in [datasets["ood_test"]]}
    ood_truth = {name: value for name, value in ood_truth.items() if value is not None}
    class_names = MetadataCatalog.get(id_set).thing_classes
    per_method: dict = {}
    for run in runs:
        diagnostics = run_diagnostics(run.evaluation.read_run(), id_truth, ood_truth, class_names)
        per_method.setdefault(run.method.name, []).append(diagnostics)
    return per_method


def methods_table(methods: Sequence[Method], rows: Sequence[dict]) -> str:
    """A Markdown table of the methods: config, overrides, mean wall time of a run."""
    lines = [
        "| method | config | overrides | description | mean s per run |",
        "|---|---|---|---|---|",
    ]
    for method in methods:
        seconds = [row["wall_seconds"] for row in rows if row["method"] == method.name]
        pairs = zip(method.overrides[::2], method.overrides[1::2])
        overrides = " ".join(f"`{key} {value}`" for key, value in pairs) or "-"
        lines.append(
            f"| {method.name} | {method.config} | {overrides} | {method.description or '-'} | "
            f"{sum(seconds) / len(seconds):.0f} |"
        )
    return "\n".join(lines)


def open_set_section(
    rows: Sequence[dict], mixed_set: str, baselines: Sequence[Sequence[str]]
) -> List[str]:
    """The report's lines on one mixed (open-set) set: the open-set metrics per method and flag
    (mean ± std) and their paired differences to each baseline (method, score)."""
    lines = [
        f"## Mixed scenes {mixed_set} (open-set metrics)",
        "",
        "Known and unseen shapes in the same images. Each kept box whose score falls below the "
        'value 95% of kept ID boxes reach is flagged unknown; "no flag" is the detector without '
        "a score. Known AP50 of the unflagged boxes, unknown AP50 and recall of the flagged ones "
        "(percent); WI: Wilderness Impact at known recall 0.8 (x100, as opendet2 prints it; lower "
        "is better); "
        "A-OSE: unflagged boxes on unknown objects (a count, and per 100 unknown objects; lower "
        "is better). Mean ± standard deviation over the training seeds:",
        "",
        open_set_summary_table(rows, mixed_set),
        "",
    ]
    for base_method, base_score in baselines:
        lines += [
            f"Paired differences to {base_method} + {base_score} (as above; **bold**: the "
            f"{CONFIDENCE:.0%} t-interval excludes 0):",
            "",
            open_set_difference_table(rows, mixed_set, (base_method, base_score), CONFIDENCE),
            "",
        ]
    return lines


def write_report(
    args: argparse.Namespace,
    methods: List[Method],
    runs: List[GridRun],
    rows: List[dict],
    diagnostics: dict,
) -> List[str]:
    """Write ``<output>/report.md`` and its plots; return the tables (to print)."""
    output = args.output
    plots = os.path.join(output, "plots")
    os.makedirs(plots, exist_ok=True)
    first_seed = args.seeds[0]
    lines = [
        f"# vos-det benchmark: {len(methods)} methods x {len(args.seeds)} training seeds",
        "",
        f"Synthetic benchmark of data seed {args.data_seed} (ID test set "
        f"`{common_value(rows, 'id_dataset')}`), {common_value(rows, 'protocol')} evaluation "
        "protocol; "
        f"training seeds {', '.join(map(str, args.seeds))}; overrides for every run: "
        f"`{' '.join(args.opts) or 'none'}`. {len(rows)} runs, "
        f"{sum(row['wall_seconds'] for row in rows) / 60:.1f} min of training and evaluation "
        "(one core each). Every number is in percent; every run is in `results.json`.",
        "",
        methods_table(methods, rows),
        "",
    ]
    tables = []
    first_runs = {
        run.method.name: run.evaluation.read_run() for run in runs if run.seed == first_seed
    }
    for ood_set in ood_sets(rows):
        summary = summary_table(rows, ood_set)
        fpr_plot = os.path.join(plots, f"fpr_{ood_set}.png")
        roc_plot = os.path.join(plots, f"roc_seed{first_seed}_{ood_set}.png")
        plot_fpr(rows, ood_set, fpr_plot)
        plot_roc_curves_of_methods(first_runs, ood_set, roc_plot)
        lines += [
            f"## OOD set {ood_set}",
            "",
            "Mean ± standard deviation over the training seeds (AP and AP50 belong to the method, "
            "the same for all its scores):",
            "",
            summary,
            "",
        ]
        tables += [f"{ood_set}: mean ± std", summary, ""]
        for base_method, base_score in args.baselines:
            differences = paired_difference_table(
                rows, ood_set, (base_method, base_score), CONFIDENCE
            )
            lines += [
                f"Paired differences to {base_method} + {base_score}: on every seed, the method's "
                f"metric minus the baseline's on the same seed; mean ± half-width of the "
                f"{CONFIDENCE:.0%} t-interval over the seeds (mean ± t * sd / sqrt(n)); "
                "**bold**: the interval excludes 0. Lower FPR is better; higher AP, AUROC and "
                "AUPR.",
                "",
                differences,
                "",
            ]
            tables += [f"paired differences to {base_method} + {base_score}", differences, ""]
        lines += [
            f"![FPR per method and score]({os.path.relpath(fpr_plot, output)})",
            f"![ROC curves, seed {first_seed}]({os.path.relpath(roc_plot, output)})",
            "",
        ]
        explained = diagnostics_tables(diagnostics, ood_set, DIAGNOSED_SCORES)
        if explained:
            lines += [
                f"### What the numbers are made of ({ood_set})",
                "",
                "Means over the seeds. A kept OOD box belongs to the OOD object it covers (IoU >= "
                "0.5) or is a fragment (a part of an object, or clutter); it passes as ID when "
                "its score reaches the value 95% of kept ID boxes reach, so a class's pass rate "
                "is its own FPR95. The passing boxes take the ID class the detector gave them.",
                "",
                explained,
                "",
            ]
    for mixed_set in mixed_sets(rows):
        lines += open_set_section(rows, mixed_set, args.baselines)
        tables += [
            f"{mixed_set}: open-set metrics, mean ± std",
            open_set_summary_table(rows, mixed_set),
            "",
        ]
    diagnostics = training_diagnostics_table(runs)
    if diagnostics:
        lines += [
            "## Training diagnostics",
            "",
            "The uncertainty heads over the last 100 training iterations (`vos/*` of each run's "
            "`metrics.json`), mean ± std over the seeds. A head that learns nothing keeps its "
            "loss at its chance level (the binary entropy of the batch's ID/outlier mix) and its "
            "AUROC of real boxes vs virtual outliers near 0.5.",
            "",
            diagnostics,
            "",
        ]
    with atomic_write(os.path.join(output, "report.md")) as f:
        f.write("\n".join(lines))
    return tables
