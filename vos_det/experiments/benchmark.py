"""Methods x training seeds on the synthetic benchmark (``make benchmark``): means, standard
deviations and paired confidence intervals, so that methods can be told apart.

    python tools/benchmark.py                      # every method of the methods file, seeds 1-3
    python tools/benchmark.py --methods vanilla vos --seeds 5 -- SOLVER.MAX_ITER 400
    python tools/benchmark.py --method "vos_w05=Synthetic/vos.yaml VOS.LOSS_WEIGHT 0.5"
    python tools/benchmark.py --data-seed 1 --output output/benchmark_val   # a validation draw

Methods come from ``--methods-file`` (default ``configs/Synthetic/benchmark_methods.yaml``,
format in ``vos_det/experiments/method_grid.py``) and from ``--method "NAME=CONFIG [KEY VALUE ...]"``
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
from typing import Callable, List, Optional, Sequence

from detectron2.data import DatasetCatalog
from tqdm import tqdm

from .. import model_zoo
from ..core.files import atomic_write
from ..data.synthetic_draws import (
    add_draw_arguments,
    dataset_overrides,
    synthetic_benchmark_setup,
)
from ..utils.seeds import add_seeds_argument, expand_seeds
from ..utils.weights import ensure_pretrained_weights
from .benchmark_report import grid_diagnostics, write_report
from .method_grid import (
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
from .parallel_runs import log_to_file, train_and_evaluate_all
from .seed_report import result_row

METHODS_FILE = model_zoo.get_config_file("Synthetic/benchmark_methods.yaml")


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
    if not os.path.isfile(args.methods_file):
        parser.error(f"--methods-file {args.methods_file} does not exist")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a file; name a folder for the runs and report")
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


def check_baselines(baselines: Sequence[Sequence[str]], runs: Sequence[GridRun]) -> None:
    """Refuse, before anything trains, a baseline whose method is not run or whose score its
    runs do not compute.

    Raises:
        ValueError: naming the baseline and what would work.
    """
    scores = {}
    for run in runs:
        scores[run.method.name] = (run.cfg.VOS.SCORE, *run.cfg.VOS.EVAL.SCORES)
    for method, score in baselines:
        if method not in scores:
            raise ValueError(
                f"The baseline method {method} is not among the methods to run {list(scores)}: "
                "select it too, or choose another --baseline."
            )
        if score not in scores[method]:
            raise ValueError(
                f"The baseline score {score} is not computed by {method}'s runs; they compute "
                f"{list(dict.fromkeys(scores[method]))}."
            )


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
    DatasetCatalog.get(train_set)  # the data first: a bad data root fails in seconds
    ensure_pretrained_weights(run.cfg for run in pending)  # once, on first use
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


def main(argv: Optional[Sequence[str]] = None) -> BenchmarkOutput:
    """Train the runs of the grid not saved yet, then write the results and the report.

    Args:
        argv (Sequence[str] or None): the command line without the program (None: sys.argv).

    Returns:
        BenchmarkOutput: the files written and the runs trained.

    Raises:
        ValueError: naming the problem, for a bad method, override or baseline, or saved runs
            of another config (:class:`~vos_det.experiments.method_grid.ChangedRunsError`).
    """
    args = parse_arguments(argv)
    os.makedirs(args.output, exist_ok=True)
    log_to_file(os.path.join(args.output, "log.txt"))
    methods = select_methods(args.methods_file, args.method, args.methods)
    datasets, setup = synthetic_benchmark_setup(args.images, args.data_root, args.data_seed)
    runs = grid_runs(methods, args.seeds, args.output, dataset_overrides(datasets) + args.opts)
    check_baselines(args.baselines, runs)
    pending = plan_runs(runs, args.rerun_changed)
    if pending:
        train_pending(runs, pending, args.jobs, setup, datasets["train"])
    rows = run_rows(runs, args.data_seed)
    results = os.path.join(args.output, "results.json")
    with atomic_write(results) as f:
        json.dump({"datasets": datasets, "baselines": args.baselines, "runs": rows}, f, indent=2)
    diagnostics = grid_diagnostics(runs, datasets)
    tables = write_report(args, methods, runs, rows, diagnostics)
    print("\n".join(tables))
    report = os.path.join(args.output, "report.md")
    print(f"report: {report}")
    return BenchmarkOutput(report, results, [run.name for run in pending])

