#!/usr/bin/env python3
"""Methods x training seeds on the synthetic benchmark (``make benchmark``): means, standard
deviations and paired confidence intervals, so that methods can be told apart.

    python tools/benchmark.py                      # every method of the methods file, seeds 1-3
    python tools/benchmark.py --methods vanilla vos --seeds 5 -- SOLVER.MAX_ITER 400
    python tools/benchmark.py --method "vos_w05=Synthetic/vos.yaml VOS.LOSS_WEIGHT 0.5"
    python tools/benchmark.py --data-seed 1 --output output/benchmark_val   # a validation draw

Methods come from ``--methods-file`` (default ``configs/Synthetic/benchmark_methods.yaml``,
format in ``vos_det/engine/method_grid.py``) and from ``--method "NAME=CONFIG [KEY VALUE ...]"``
(repeatable, one quoted argument each); all of them run unless ``--methods`` selects some.
``--seeds N`` trains seeds 1..N, ``--seeds 4 7 9`` those seeds. ``KEY VALUE`` config overrides
after the options apply to every run, after each method's own (after ``--`` when the last option
is ``--methods`` or ``--seeds``).

Runs go side by side, one single-threaded process each (``--jobs``, default: one per core),
into ``<output>/runs/<method>/seed<k>/``. The tool is resumable: a run whose results and record
are saved with the same config is not trained again, so rerunning a command only rewrites the
report. A saved run whose config differs (another override, config or data draw) is refused,
naming the changed keys, unless ``--rerun-changed`` trains it again.

Writes ``<output>/results.json`` (every run's metrics), ``<output>/report.md`` (mean ± std per
method and score, paired differences to each baseline with 95% t-intervals, the FPR plot and the
ROC curves of the first seed, in ``<output>/plots/``, and the uncertainty heads' training
diagnostics) and ``<output>/log.txt``.
"""

import argparse
import dataclasses
import json
import os
import sys
from typing import Callable, List, Optional, Sequence

import vos_det  # first: it silences known warnings of the imports below
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from vos_det.data.synthetic_draws import (
    add_draw_arguments,
    dataset_overrides,
    synthetic_benchmark_setup,
)
from vos_det.engine import log_to_file, train_and_evaluate_all
from vos_det.engine.training_log import TRAINING_DIAGNOSTICS, final_training_metrics
from vos_det.engine.method_grid import (
    GridRun,
    Method,
    grid_runs,
    load_methods,
    parse_method,
    plan_runs,
    prepare_run,
    read_run_record,
    write_run_record,
)
from vos_det.evaluation.detectron2_adapters import ground_truth_arrays, ood_object_arrays
from vos_det.evaluation.diagnostics_report import diagnostics_tables, run_diagnostics
from vos_det.evaluation.output_folder import atomic_write
from vos_det.evaluation.seed_report import (
    common_value,
    ood_sets,
    paired_difference_table,
    plot_fpr,
    plot_roc_curves_of_methods,
    result_row,
    summary_table,
)
from vos_det.evaluation.seed_statistics import summarize
from vos_det.utils.seeds import add_seeds_argument, expand_seeds
from vos_det.utils.weights import ensure_pretrained_weights

METHODS_FILE = vos_det.model_zoo.get_config_file("Synthetic/benchmark_methods.yaml")
CONFIDENCE = 0.95
#: The scores whose "passes as which ID class" diagnostics the report shows.
DIAGNOSED_SCORES = ("energy", "mahalanobis", "crop_mahalanobis")


@dataclasses.dataclass
class BenchmarkOutput:
    """What one invocation wrote and did.

    Attributes:
        report (str): ``report.md``.
        results (str): ``results.json``.
        trained (list[str]): the runs trained by this invocation ("<method>/seed<k>").
    """

    report: str
    results: str
    trained: List[str]


def parse_arguments(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line; errors exit with a message naming the option."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="output/benchmark", help="folder for runs and report")
    parser.add_argument("--methods-file", default=METHODS_FILE, help="YAML file of methods")
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        metavar='"NAME=CONFIG [KEY VALUE ...]"',
        help='add a method (repeatable), e.g. "vos_w05=Synthetic/vos.yaml VOS.LOSS_WEIGHT 0.5"',
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="run these methods (default: all; -- before overrides)",
    )
    add_seeds_argument(parser, "(-- before overrides)")
    parser.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="draw of the synthetic benchmark (default 0: the built-in test draw); another seed "
        "is generated under $DETECTRON2_DATASETS/synthetic_seed<k>",
    )
    add_draw_arguments(parser)
    parser.add_argument(
        "--baseline",
        nargs=2,
        action="append",
        dest="baselines",
        metavar=("METHOD", "SCORE"),
        help="what the paired differences compare with (default: vanilla energy); repeat it "
        "for one table of differences per baseline",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="runs at the same time, one single-threaded process each (default: one per core)",
    )
    parser.add_argument(
        "--rerun-changed",
        action="store_true",
        help="train again the saved runs whose config differs from the requested one",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.opts[:1] == ["--"]:
        args.opts = args.opts[1:]
    args.baselines = args.baselines or [["vanilla", "energy"]]
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    args.seeds = expand_seeds(parser, args.seeds)
    return args


def select_methods(
    methods_file: str, added: Sequence[str], selected: Optional[Sequence[str]]
) -> List[Method]:
    """The methods to run: those of the file and the added ones, or the ``selected`` names.

    Raises:
        ValueError: for an added method named like another one, or an unknown selected name.
    """
    methods = load_methods(methods_file)
    for text in added:
        method = parse_method(text)
        if method.name in methods:
            raise ValueError(f"--method {method.name} is already defined (in {methods_file}).")
        methods[method.name] = method
    unknown = [name for name in selected or () if name not in methods]
    if unknown:
        hint = ""
        if any("." in name for name in unknown):
            hint = " Config overrides after --methods need -- before them."
        raise ValueError(
            f"Unknown method(s) {unknown}; defined: {list(methods)} ({methods_file} and "
            f"--method).{hint}"
        )
    return [methods[name] for name in selected] if selected else list(methods.values())


def train_pending(
    runs: List[GridRun],
    pending: List[GridRun],
    jobs: int,
    setup: Optional[Callable[[], object]],
    train_set: str,
) -> None:
    """Train the pending runs side by side, recording each as it finishes, with a progress bar
    over all runs of the grid (done / total and the ETA).

    Args:
        runs (list[GridRun]): the grid.
        pending (list[GridRun]): its runs to train.
        jobs (int): runs at the same time (at most one per pending run).
        setup (callable or None): registers the datasets in a fresh process.
        train_set (str): the training set, generated here once before the runs start.
    """
    DatasetCatalog.get(train_set)
    for run in pending:
        prepare_run(run)
    by_name = {run.name: run for run in pending}
    with tqdm(
        total=len(runs), initial=len(runs) - len(pending), desc="runs", unit="run"
    ) as progress:

        def finished(name: str, seconds: float) -> None:
            write_run_record(by_name[name], seconds)
            progress.set_postfix_str(f"{name} done in {seconds:.0f} s")
            progress.update(1)

        train_and_evaluate_all(
            {run.name: run.cfg for run in pending},
            min(jobs, len(pending)),
            setup,
            on_finished=finished,
            iteration_bars=False,
        )


def run_rows(runs: Sequence[GridRun], data_seed: int) -> List[dict]:
    """Every run's identity, wall time and metrics, as ``results.json`` holds them."""
    rows = []
    for run in runs:
        record = read_run_record(run)
        identity = {"method": run.method.name, "seed": run.seed, "data_seed": data_seed}
        rows.append(
            {
                **identity,
                "config_sha256": record["config_sha256"],
                "wall_seconds": record["wall_seconds"],
                **result_row(run.evaluation.read_results()),
            }
        )
    return rows


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


def main(argv: Optional[Sequence[str]] = None) -> BenchmarkOutput:
    """Train the runs of the grid not saved yet, then write the results and the report.

    Args:
        argv (Sequence[str] or None): the command line without the program (None: sys.argv).

    Returns:
        BenchmarkOutput: the files written and the runs trained.

    Raises:
        ValueError: naming the problem, for a bad method, override or baseline, or saved runs
            of another config (:class:`~vos_det.engine.method_grid.ChangedRunsError`).
    """
    args = parse_arguments(argv)
    os.makedirs(args.output, exist_ok=True)
    log_to_file(os.path.join(args.output, "log.txt"))
    methods = select_methods(args.methods_file, args.method, args.methods)
    for base_method, _ in args.baselines:
        if base_method not in [method.name for method in methods]:
            raise ValueError(
                f"The baseline method {base_method} is not among the methods to run "
                f"{[method.name for method in methods]}: select it too, or choose --baseline."
            )
    datasets, setup = synthetic_benchmark_setup(args.images, args.data_root, args.data_seed)
    runs = grid_runs(methods, args.seeds, args.output, dataset_overrides(datasets) + args.opts)
    pending = plan_runs(runs, args.rerun_changed)
    if pending:
        ensure_pretrained_weights(run.cfg for run in pending)
        train_pending(runs, pending, args.jobs, setup, datasets["train"])
    rows = run_rows(runs, args.data_seed)
    results = os.path.join(args.output, "results.json")
    with atomic_write(results) as f:
        json.dump({"datasets": datasets, "baselines": args.baselines, "runs": rows}, f, indent=2)
    tables = write_report(args, methods, runs, rows, grid_diagnostics(runs, datasets))
    print("\n".join(tables))
    report = os.path.join(args.output, "report.md")
    print(f"report: {report}")
    return BenchmarkOutput(report, results, [run.name for run in pending])


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # a bad method, override or saved run: the message says it all
        sys.exit(f"benchmark.py: error: {e}")
