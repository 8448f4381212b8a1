#!/usr/bin/env python3
"""VOS on an image classifier: train and evaluate on the embedded classification benchmark (CPU).

    python tools/train_classifier.py                                  # vanilla and VOS, seeds 1-3
    python tools/train_classifier.py --method vos --bottleneck-dims 16 64 128 512
    python tools/train_classifier.py --quick --output-dir /tmp/cls    # a smoke test, seconds

The benchmark (:mod:`vos_det.classification.data`) is generated on first use under
``--data-root`` (default ``$DETECTRON2_DATASETS/synthetic_classification``): 32x32 images of one
ID shape (circle, square, triangle) for training and the ID test set, unseen shapes as the near
OOD set, shape-free cluttered backgrounds as the far OOD set. The backbone (below), then
a bottleneck, a linear classifier and the energy uncertainty head; ``vanilla`` trains without the
uncertainty loss, ``vos`` adds it from ``--start-epoch`` on. Every run is one process thread.

Each run (method x bottleneck size x seed) is saved in
``<output>/runs/<method>_d<dim>/seed<k>/run.json`` with its picture grid ``scores.png``; a run
saved with the same settings is not trained again. Writes ``<output>/results.json`` (every run),
``<output>/report.md`` (mean ± std over seeds of the accuracy and of FPR95 / AUROC / AUPR per
OOD set and score) and ``<output>/scores.png`` (the first VOS run's test images with their
ID-ness scores: green kept as ID at 95% TPR, red flagged).

The backbone (``--backbone``): ``pretrained`` (default), the benchmark detector's ResNet-18-GN
pretrained on the procedural corpus (``make pretrain``; built on first use) and kept frozen, as
users start from ImageNet weights; ``scratch``, the small CNN trained from scratch (the regime
before pretraining; ``--quick`` uses it, to stay a seconds-long smoke test).
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from vos_det.classification import (
    PretrainedResNet,
    ClassificationBenchmarkSpec,
    TrainingConfig,
    VOSClassifierConfig,
    build_classifier,
    default_classification_root,
    evaluate_classifier,
    generate_classification_benchmark,
    load_split,
    score_grid,
    train_classifier,
)
from vos_det.core.shape_scenes import SYNTHETIC_ID_CLASSES
from vos_det.core.ood_metrics import id_threshold_at_tpr
from vos_det.core.files import atomic_write
from vos_det.experiments.seed_statistics import paired_t_interval, summarize
from vos_det.experiments.settings_diff import changed_settings
from vos_det.pretraining.weights import (
    PRETRAINED_MODELS,
    load_pretrained_backbone,
    pretrain_with_progress,
)
from vos_det.utils.seeds import add_seeds_argument, expand_seeds

METHODS = ("vanilla", "vos")
BACKBONES = ("pretrained", "scratch")
PRETRAINED = "synthetic_R18_GN"  # the named pretraining the "pretrained" backbone loads
OOD_SETS = ("ood_near", "ood_far")
TPR = 0.95
GRID_IMAGES = 10  # images per row of the picture grid
QUICK_SPEC = ClassificationBenchmarkSpec(num_train=48, num_test=12, image_size=32)
QUICK_OVERRIDES = {"queue_size": 8, "num_candidates": 100}


def parse_arguments(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line; errors exit with code 2 and a message naming the option."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="output/classification", help="output folder")
    parser.add_argument(
        "--data-root",
        help="benchmark folder (default $DETECTRON2_DATASETS/synthetic_classification, "
        "..._quick with --quick)",
    )
    parser.add_argument(
        "--method", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run"
    )
    parser.add_argument(
        "--bottleneck-dims", nargs="+", type=int, default=[64], help="bottleneck sizes (64)"
    )
    add_seeds_argument(parser)
    parser.add_argument("--epochs", type=int, help="training epochs (8; --quick: 1)")
    parser.add_argument(
        "--start-epoch", type=int, help="first epoch of the uncertainty loss (default: half)"
    )
    parser.add_argument("--loss-weight", type=float, default=0.1, help="VOS loss weight (0.1)")
    parser.add_argument(
        "--num-select", type=int, default=1, help="virtual outliers per class and step (1)"
    )
    parser.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="pretrained",
        help="the frozen corpus-pretrained ResNet-18-GN (default; built on first use) or the "
        "small CNN trained from scratch",
    )
    parser.add_argument(
        "--width", type=int, help="channels of the scratch CNN's 1st stage (16; --quick: 4)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: 48 training images, the scratch CNN of width 4, one epoch",
    )
    parser.add_argument(
        "--retrain-changed",
        action="store_true",
        help="train again the saved runs whose settings differ from the requested ones "
        "(without it they are refused, naming the settings)",
    )
    args = parser.parse_args(argv)
    args.seeds = expand_seeds(parser, args.seeds)
    if min(args.bottleneck_dims) < 1 or len(set(args.bottleneck_dims)) != len(args.bottleneck_dims):
        parser.error(f"--bottleneck-dims must be distinct sizes >= 1, got {args.bottleneck_dims}")
    if args.quick:
        given = [f"--{name}" for name in ("epochs", "width") if getattr(args, name) is not None]
        if given or args.backbone != "pretrained":
            parser.error(
                f"--quick sets the epochs, the width and the backbone itself; leave out "
                f"{', '.join(given) or '--backbone'}"
            )
        args.epochs, args.width, args.backbone = 1, 4, "scratch"
    args.epochs = 8 if args.epochs is None else args.epochs
    args.width = 16 if args.width is None else args.width
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.start_epoch is None:
        args.start_epoch = args.epochs // 2
    if not 0 <= args.start_epoch < args.epochs:
        parser.error(f"--start-epoch must be in [0, --epochs), got {args.start_epoch}")
    if args.loss_weight <= 0:
        parser.error(f"--loss-weight must be > 0, got {args.loss_weight}")
    if args.num_select < 1:
        parser.error(f"--num-select must be >= 1, got {args.num_select}")
    if args.width < 1:
        parser.error(f"--width must be >= 1, got {args.width}")
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        parser.error(f"--output-dir {args.output_dir} is a file; name a folder")
    if args.data_root is None:
        suffix = "_quick" if args.quick else ""
        args.data_root = default_classification_root() + suffix
    args.method = list(dict.fromkeys(args.method))
    return args


def run_settings(args: argparse.Namespace, method: str, dim: int, seed: int) -> dict:
    """Everything a run's result depends on (a saved run is reused when they are equal)."""
    spec = QUICK_SPEC if args.quick else ClassificationBenchmarkSpec()
    training = TrainingConfig(epochs=args.epochs, batch_size=16 if args.quick else 128, seed=seed)
    steps = training.iterations_per_epoch(spec.num_train)
    vos = VOSClassifierConfig(
        bottleneck_dim=dim,
        start_iter=args.start_epoch * steps,
        loss_weight=args.loss_weight if method == "vos" else 0.0,
        num_select=args.num_select,
        **(QUICK_OVERRIDES if args.quick else {}),
    )
    backbone = {"name": args.backbone}
    if args.backbone == "scratch":
        backbone["width"] = args.width
    else:
        backbone["pretraining"] = dataclasses.asdict(PRETRAINED_MODELS[PRETRAINED])
    return {
        "method": method,
        "benchmark": dataclasses.asdict(spec),
        "training": dataclasses.asdict(training),
        "vos": dataclasses.asdict(vos),
        "backbone": backbone,
    }


def train_run(settings: dict, data: Dict[str, tuple], folder: str) -> dict:
    """Train and evaluate one run; save its record and picture grid in ``folder``.

    Returns:
        dict: the record: settings, metrics, per-epoch history, training time in seconds.
    """
    vos = VOSClassifierConfig(**{**settings["vos"], "scores": tuple(settings["vos"]["scores"])})
    training = TrainingConfig(**settings["training"])
    model = build_classifier(
        len(SYNTHETIC_ID_CLASSES),
        vos,
        training.seed,
        settings["backbone"].get("width", 16),
        _pretrained_backbone() if settings["backbone"]["name"] == "pretrained" else None,
    )
    start = time.perf_counter()
    history = train_classifier(model, *data["train"], training)
    train_seconds = time.perf_counter() - start
    ood = {name: data[name][0] for name in OOD_SETS}
    metrics, scores = evaluate_classifier(model, *data["id_test"], ood, tpr=TPR)
    record = {
        "settings": settings,
        "metrics": metrics,
        "history": history,
        "train_seconds": train_seconds,
    }
    os.makedirs(folder, exist_ok=True)
    _write_grid(settings["method"], data, scores, os.path.join(folder, "scores.png"))
    with atomic_write(os.path.join(folder, "run.json")) as f:
        json.dump(record, f, indent=2)
    return record


def _pretrained_backbone() -> PretrainedResNet:
    """The frozen corpus-pretrained ResNet (pretrained here first when it is not cached)."""
    return PretrainedResNet(load_pretrained_backbone(pretrain_with_progress(PRETRAINED)), frozen=True)


def _write_grid(method: str, data: Dict[str, tuple], scores: dict, path: str) -> None:
    """The test images with their ID-ness scores: the VOS score, or the MSP of a vanilla run."""
    score = "vos" if method == "vos" else "msp"
    threshold = id_threshold_at_tpr(scores["id"][score], TPR)
    titles = {"id": "ID test", "ood_near": "near OOD: unseen shapes", "ood_far": "far OOD"}
    rows = []
    for key, split in (("id", "id_test"), ("ood_near", "ood_near"), ("ood_far", "ood_far")):
        images = data[split][0][:GRID_IMAGES].permute(0, 2, 3, 1).mul(255).round().byte().numpy()
        title = f"{titles[key]} ({score} score, threshold {threshold:.2f} at 95% TPR)"
        rows.append((title, images, scores[key][score][:GRID_IMAGES]))
    picture = score_grid(rows, threshold)
    if not cv2.imwrite(path, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write {path}.")


def summary_rows(records: List[dict]) -> List[dict]:
    """Mean and std over seeds, per (method, bottleneck size) and score.

    Returns:
        list[dict]: rows with "method", "bottleneck_dim", "score", "seeds", and
        ``{"mean", "std"}`` under "accuracy" and under ``"<ood set>/<metric>"``.
    """
    groups: Dict[tuple, List[dict]] = {}
    for record in records:
        key = (record["settings"]["method"], record["settings"]["vos"]["bottleneck_dim"])
        groups.setdefault(key, []).append(record)
    rows = []
    for (method, dim), group in groups.items():
        for score in group[0]["settings"]["vos"]["scores"]:
            row = {"method": method, "bottleneck_dim": dim, "score": score, "seeds": len(group)}
            values = {"accuracy": [r["metrics"]["accuracy"] for r in group]}
            for ood_set in OOD_SETS:
                for metric in group[0]["metrics"]["ood"][ood_set][score]:
                    values[f"{ood_set}/{metric}"] = [
                        r["metrics"]["ood"][ood_set][score][metric] for r in group
                    ]
            for name, series in values.items():
                summary = summarize(series)
                row[name] = {"mean": summary.mean, "std": summary.std}
            rows.append(row)
    return rows


def paired_differences(records: List[dict], confidence: float = 0.95) -> List[dict]:
    """Per bottleneck size, VOS (its ``vos`` score) minus vanilla (``energy``) seed by seed, per
    OOD set and metric: mean and half-width of the ``confidence`` t-interval over the seeds.

    Returns:
        list[dict]: rows with "bottleneck_dim", "seeds", and ``{"mean", "half_width"}`` under
        ``"<ood set>/<metric>"``; sizes without both methods on two or more common seeds are left
        out.
    """
    runs = {}
    for record in records:
        settings = record["settings"]
        key = (settings["method"], settings["vos"]["bottleneck_dim"], settings["training"]["seed"])
        runs[key] = record
    rows = []
    for dim in dict.fromkeys(key[1] for key in runs):
        seeds = sorted(
            seed
            for method, size, seed in runs
            if (method, size) == ("vos", dim) and ("vanilla", dim, seed) in runs
        )
        if len(seeds) < 2:
            continue
        row = {"bottleneck_dim": dim, "seeds": len(seeds)}
        for ood_set in OOD_SETS:
            for metric in ("FPR95", "AUROC"):
                vos = [runs["vos", dim, s]["metrics"]["ood"][ood_set]["vos"][metric] for s in seeds]
                base = [
                    runs["vanilla", dim, s]["metrics"]["ood"][ood_set]["energy"][metric]
                    for s in seeds
                ]
                interval = paired_t_interval(vos, base, confidence)
                row[f"{ood_set}/{metric}"] = {
                    "mean": interval.mean,
                    "half_width": interval.half_width,
                }
        rows.append(row)
    return rows


def paired_table(rows: List[dict]) -> str:
    """The paired rows as a markdown table of ``mean ± half-width`` cells (bold: excludes 0)."""
    columns = [name for name in rows[0] if isinstance(rows[0][name], dict)]
    lines = [
        "| dim | seeds | " + " | ".join(f"Δ{name}" for name in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for row in rows:
        cells = []
        for name in columns:
            mean, half = row[name]["mean"], row[name]["half_width"]
            text = f"{mean:+.1f} ± {half:.1f}"
            cells.append(f"**{text}**" if abs(mean) > half else text)
        lines.append(f"| {row['bottleneck_dim']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(rows: List[dict]) -> str:
    """The summary rows as a markdown table of ``mean ± std`` cells."""
    columns = [name for name in rows[0] if isinstance(rows[0][name], dict)]
    header = ["method", "dim", "score", "seeds"] + columns
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"], str(row["bottleneck_dim"]), row["score"], str(row["seeds"])]
        cells += [_mean_std(row[name]) for name in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_std(value: dict) -> str:
    if np.isnan(value["std"]):
        return f"{value['mean']:.1f}"
    return f"{value['mean']:.1f} ± {value['std']:.1f}"


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Train the runs not saved yet, then write the results, the report and the picture.

    Returns:
        str: the path of ``report.md``.
    """
    args = parse_arguments(argv)
    torch.set_num_threads(1)
    spec = QUICK_SPEC if args.quick else ClassificationBenchmarkSpec()
    root = generate_classification_benchmark(args.data_root, spec)
    data = {split: load_split(root, split) for split in ("train", "id_test", *OOD_SETS)}
    runs = [
        (run_settings(args, method, dim, seed), run_folder(args.output_dir, method, dim, seed))
        for dim in args.bottleneck_dims
        for method in args.method
        for seed in args.seeds
    ]
    check_saved_runs(runs, args.retrain_changed)
    records, start, trained = [], time.perf_counter(), 0
    for settings, folder in runs:
        record = _saved_run(folder, settings)
        done = "reused (trained earlier"
        if record is None:
            record, done, trained = train_run(settings, data, folder), "(trained", trained + 1
        records.append(record)
        vos = settings["vos"]
        print(
            f"{settings['method']} d={vos['bottleneck_dim']} seed {settings['training']['seed']}: "
            f"accuracy {record['metrics']['accuracy']:.1f}% {done} in "
            f"{record['train_seconds']:.1f} s)"
        )
    rows = summary_rows(records)
    differences = paired_differences(records)
    with atomic_write(os.path.join(args.output_dir, "results.json")) as f:
        json.dump({"runs": records, "summary": rows, "paired": differences}, f, indent=2)
    picture = _copy_picture(args)
    table = markdown_table(rows)
    paired = (
        "\n\nPaired by seed, VOS (vos score) minus vanilla (energy): mean ± half-width of the "
        f"95% t-interval over the seeds; bold: excludes 0.\n\n{paired_table(differences)}"
        if differences
        else ""
    )
    report = os.path.join(args.output_dir, "report.md")
    with atomic_write(report) as f:
        f.write(
            f"# VOS on a classifier: {len(records)} runs ({trained} trained by this command in "
            f"{time.perf_counter() - start:.0f} s, {len(records) - trained} reused; the training "
            f"time of each run is in its record)\n\n"
            "Accuracy on the ID test set; FPR95 / AUROC / AUPR (percent) per OOD set and score, "
            f"mean ± std over seeds.\n\n{table}{paired}\n\n"
            f"![scores]({os.path.basename(picture)})\n"
        )
    print(table + paired)
    print(f"report: {report}")
    return report


def run_folder(output: str, method: str, dim: int, seed: int) -> str:
    """Where run (method, bottleneck size, seed) is saved."""
    return os.path.join(output, "runs", f"{method}_d{dim}", f"seed{seed}")


def _read_record(folder: str) -> Optional[dict]:
    """The record saved in ``folder``, or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(folder, "run.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "settings" in record else None


def _saved_run(folder: str, settings: dict) -> Optional[dict]:
    """The run saved in ``folder`` if it was trained with ``settings``, else None."""
    record = _read_record(folder)
    same = record is not None and record["settings"] == json.loads(json.dumps(settings))
    return record if same and os.path.isfile(os.path.join(folder, "scores.png")) else None


def check_saved_runs(runs: Sequence[Tuple[dict, str]], retrain_changed: bool) -> None:
    """Refuse, before anything trains, to replace saved runs made with other settings.

    Raises:
        ValueError: naming each such run folder and its changed settings, unless
            ``retrain_changed`` (then they are trained again, with a note).
    """
    changed = []
    for settings, folder in runs:
        record = _read_record(folder)
        if record is None:
            continue
        changes = changed_settings(record["settings"], json.loads(json.dumps(settings)))
        if changes:
            changed.append(f"{folder} ({'; '.join(changes)})")
    if changed and not retrain_changed:
        raise ValueError(
            f"{len(changed)} saved run(s) were made with other settings: {', '.join(changed)}. "
            "Write to another --output-dir, or replace them with --retrain-changed."
        )
    for entry in changed:
        print(f"training again {entry}")


def _copy_picture(args: argparse.Namespace) -> str:
    """Copy the picture grid of the first VOS run (else the first run) to the output folder."""
    method = "vos" if "vos" in args.method else args.method[0]
    source = os.path.join(
        args.output_dir, "runs", f"{method}_d{args.bottleneck_dims[0]}", f"seed{args.seeds[0]}"
    )
    target = os.path.join(args.output_dir, "scores.png")
    shutil.copyfile(os.path.join(source, "scores.png"), target)
    return target


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """:func:`main` with bad input reported on one line: returns the exit code (0, or 2)."""
    try:
        main(argv)
    except (ValueError, FileExistsError) as e:  # a bad data root or setting: the message says it
        print(f"train_classifier.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "train_classifier.py: interrupted. Finished runs are saved under the output folder's "
            "runs/; the same command resumes (the interrupted run trains again).",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
