"""The embedded benchmark end to end (``make demo``): train a vanilla and a VOS detector on the
synthetic open-set set, evaluate ID mAP and OOD metrics, print the table and write a report.

    python tools/showcase.py                    # the full demo (its time: see the README)
    python tools/showcase.py --quick            # a shorter schedule for a first look
    python tools/showcase.py --output output/demo SOLVER.MAX_ITER 200   # config overrides
    python tools/showcase.py --images 800 200 200   # a benchmark of another size

Both models train at the same time, one process each (``--jobs 1``: one after the other).

Writes ``<output>/{vanilla,vos}/`` (checkpoints, ``inference/`` scores, ``ood_results.json``,
plots), ``<output>/report.md`` with the table and pictures, and ``<output>/log.txt``. The
pictures (``<output>/pictures/<set>/``) show the energy baseline and the best configuration
``make benchmark`` measured (``PICTURE_SETS``), boxes flagged OOD in red by that score.
"""

import argparse
import os
from typing import Dict, List, Optional

import cv2
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor

from ..data.synthetic_draws import (
    add_draw_arguments,
    dataset_overrides,
    synthetic_benchmark_setup,
)
from .parallel_runs import log_to_file, train_and_evaluate_all
from ..config import load_vos_config
from ..evaluation import EvaluationFolder, format_table
from ..evaluation.detectron2_adapters import is_open_set_dataset
from ..utils.visualize import draw_open_set_detections
from ..utils.weights import ensure_pretrained_weights

VARIANTS = {"vanilla": "Synthetic/vanilla.yaml", "vos": "Synthetic/vos.yaml"}
# The pictures: (model, score) of the energy baseline and of the best configuration that
# `make benchmark` measured (README: the vanilla model scored by the Mahalanobis distance of
# its box crops embedded by the pretrained backbone).
PICTURE_SETS = {"baseline": ("vanilla", "energy"), "best": ("vanilla", "crop_mahalanobis")}
QUICK_FRACTION = 4  # --quick: a quarter of the schedule
PICTURES_PER_SET = 3
DEMO_PREFIX = "demo_synthetic"  # dataset names of a benchmark chosen with --images/--data-root


def quick_overrides(config: str) -> List:
    """``KEY, VALUE, ...`` that shrink the schedule of ``config`` (a ``VARIANTS`` config) to
    ``1 / QUICK_FRACTION``: the LR steps, the checkpoint period and VOS.START_ITER keep their
    place in it (the uncertainty loss over the same last fraction of the steps)."""
    cfg = load_vos_config(config, [], output_dir="")

    def shrink(iteration: int) -> int:
        return max(1, round(iteration / QUICK_FRACTION))

    return [
        "SOLVER.MAX_ITER",
        shrink(cfg.SOLVER.MAX_ITER),
        "SOLVER.STEPS",
        tuple(shrink(step) for step in cfg.SOLVER.STEPS),
        "VOS.START_ITER",
        shrink(cfg.VOS.START_ITER),
        "SOLVER.CHECKPOINT_PERIOD",
        shrink(cfg.SOLVER.CHECKPOINT_PERIOD),
    ]


def build_cfg(variant: str, output: str, quick: bool, opts: List[str]):
    """The config of ``variant`` writing to ``<output>/<variant>``; ``opts`` apply last."""
    config = VARIANTS[variant]
    overrides = (quick_overrides(config) if quick else []) + list(opts)
    return load_vos_config(config, overrides, os.path.join(output, variant))


def evaluation_folder(cfg) -> EvaluationFolder:
    """The evaluation folder of a run."""
    return EvaluationFolder(os.path.join(cfg.OUTPUT_DIR, "inference"))


def picture_records(dataset: str) -> List[dict]:
    """The first :data:`PICTURES_PER_SET` images of a test set; of a mixed (open-set) set, the
    first one holding known and unknown objects together (so that flagged unknown shapes stand
    beside known ones)."""
    records = DatasetCatalog.get(dataset)
    if not is_open_set_dataset(dataset):
        return records[:PICTURES_PER_SET]
    unknown = len(MetadataCatalog.get(dataset).id_classes)
    for record in records:
        classes = {annotation["category_id"] for annotation in record["annotations"]}
        if unknown in classes and len(classes) > 1:
            return [record]
    return records[:1]


def draw_examples(cfg, score: str, ood_threshold: float, folder: str) -> List[str]:
    """Annotated detections on the first images of every test set (:func:`picture_records`),
    flagged OOD (red) when their ``score`` falls below ``ood_threshold``; returns the PNG
    paths."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    cfg.VOS.SCORE = score
    cfg.VOS.OOD_THRESHOLD = ood_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.5
    predictor = DefaultPredictor(cfg)
    class_names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes
    os.makedirs(folder, exist_ok=True)
    paths = []
    for dataset in cfg.DATASETS.TEST:
        for record in picture_records(dataset):
            image = cv2.imread(record["file_name"])
            instances = predictor(image)["instances"].to("cpu")
            drawn = draw_open_set_detections(image[:, :, ::-1], instances, class_names, None)
            path = os.path.join(folder, f"{dataset}_{os.path.basename(record['file_name'])}")
            cv2.imwrite(path, drawn[:, :, ::-1])
            paths.append(path)
    return paths


def write_report(
    output: str,
    table: str,
    seconds: Dict[str, float],
    jobs: int,
    cfgs: dict,
    thresholds: Dict[str, float],
    pictures: Dict[str, List[str]],
) -> str:
    lines = ["# vos-det demo: synthetic open-set benchmark", ""]
    lines += [
        f"Training and evaluation took {seconds['vanilla']:.0f} s (vanilla) and "
        f"{seconds['vos']:.0f} s (VOS) on this machine, "
        f"{'side by side' if jobs > 1 else 'one after the other'}; "
        f"{cfgs['vos'].SOLVER.MAX_ITER} iterations each, VOS loss from iteration "
        f"{cfgs['vos'].VOS.START_ITER}.",
        "",
        table,
        "",
    ]
    for name, paths in pictures.items():
        variant, score = PICTURE_SETS[name]
        lines += [
            f"## {name}: the {variant} model's detections (green = ID, red = flagged OOD: "
            f"{score} score below {thresholds[name]:.4f}, the value 95% of kept ID boxes reach)",
            "",
        ]
        lines += [f"![{os.path.basename(p)}]({os.path.relpath(p, output)})" for p in paths]
        lines.append("")
    for variant, cfg in cfgs.items():
        plots = evaluation_folder(cfg).plots_folder
        if os.path.isdir(plots):
            lines += ["", f"Score histograms and ROC curves ({variant}):", ""]
            lines += [
                f"![{name}]({os.path.relpath(os.path.join(plots, name), output)})"
                for name in sorted(os.listdir(plots))
                if name.endswith(".png")
            ]
        lines.append("")
    path = os.path.join(output, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/demo", help="folder for runs and report")
    parser.add_argument("--quick", action="store_true", help="a quarter of the schedule")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="models trained at the same time, one process each (default: 2 "
        "when there are 2 or more cores)",
    )
    add_draw_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    os.makedirs(args.output, exist_ok=True)
    log_to_file(os.path.join(args.output, "log.txt"))
    datasets, setup = synthetic_benchmark_setup(
        args.images, args.data_root, name_prefix=DEMO_PREFIX
    )
    dataset_opts = dataset_overrides(datasets)
    cfgs = {v: build_cfg(v, args.output, args.quick, dataset_opts + args.opts) for v in VARIANTS}
    DatasetCatalog.get(datasets["train"])  # generate the data once, before the runs start
    ensure_pretrained_weights(cfgs.values())  # pretrain once, on first use
    seconds = train_and_evaluate_all(cfgs, args.jobs, setup)
    results = {v: evaluation_folder(cfg).read_results() for v, cfg in cfgs.items()}
    table = format_table(results)
    print(table)
    # The score 95% (TPR) of the kept ID boxes reach: boxes below it are drawn as OOD.
    thresholds = {
        name: results[variant].id_score_thresholds[score]
        for name, (variant, score) in PICTURE_SETS.items()
    }
    pictures = {
        name: draw_examples(
            cfgs[variant], score, thresholds[name], os.path.join(args.output, "pictures", name)
        )
        for name, (variant, score) in PICTURE_SETS.items()
    }
    report = write_report(args.output, table, seconds, args.jobs, cfgs, thresholds, pictures)
    print(f"report: {report}")
    return report

