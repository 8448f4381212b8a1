#!/usr/bin/env python3
"""Run a trained VOS detector on images; write annotated pictures and ``detections.json``.

Every box is labelled with its class, class probability and ID-ness (``id_scores``), green when
in-distribution and red when flagged OOD (``id_scores`` below ``VOS.OOD_THRESHOLD``).

    python tools/demo.py --config-file configs/VOC-Detection/vos_R_50_FPN.yaml \\
        --input images/ street.jpg "more/*.png" --output demo_out \\
        --ood-threshold-from output/vos/inference MODEL.WEIGHTS output/vos/model_final.pth

Only the scores it draws and records are computed: ``VOS.SCORE`` (the ``id_score``), and those
``--scores`` adds (each recorded as ``<name>_score``).

Exit status: 0 when every image was processed; 1 when some were skipped, each named in a
warning: unreadable or damaged (truncated) files, images the detector cannot take (e.g. 1 x 3000
pixels); 2 for a usage error, before any image is read: no image matched an input, a config
mistake (unknown key, odd override list), weights not found or not fitting the config, a score
whose statistics the weights lack, a confidence threshold outside [0, 1], an output file that
would overwrite an input. ``detections.json`` holds the processed images; its non-finite numbers
are ``null``, and a box with a non-finite ID score is flagged OOD. The pictures and
``detections.json`` are written when the run ends: an interrupted run, or one that processed no
image, leaves an earlier run's outputs as they were.
"""


import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import List, Optional, Sequence

import vos_det  # noqa: F401  first: it silences known warnings of the imports below
import cv2
from detectron2.config import CfgNode
from detectron2.engine import DefaultPredictor
from detectron2.utils.logger import setup_logger

from vos_det.config import load_vos_config
from vos_det.modeling.config_checks import validate_vos_config
from vos_det.modeling.detection_scores import check_score_statistics
from vos_det.utils.visualize import draw_open_set_detections
from vos_det.utils.weights import check_weights
from vos_det.utils.detection_records import (
    DETECTIONS_FILE,
    class_names_of,
    derived_ood_threshold,
    detect,
    detections_record,
    flag_non_finite_scores,
)
from vos_det.utils.image_files import SkippedImage, check_outputs, collect_inputs, read_image
from vos_det.utils.weights import load_fitting_weights

logger = logging.getLogger("vos_det.demo")


def probability(text: str) -> float:
    """``argparse`` type of ``--confidence-threshold``: a number in [0, 1].

    Raises:
        argparse.ArgumentTypeError: ``text`` is a number outside [0, 1] (or NaN).
    """
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text} is not a class probability: pass a value in [0, 1], e.g. 0.5"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """Returns: the command-line parser (config, inputs, output, thresholds, overrides)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config YAML")
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="image files, folders (their images, not recursive) or glob patterns",
    )
    parser.add_argument(
        "--output", required=True, help="folder for the annotated images and " + DETECTIONS_FILE
    )
    parser.add_argument(
        "--confidence-threshold",
        type=probability,
        default=0.5,
        help="minimum class probability of a detection (MODEL.ROI_HEADS.SCORE_THRESH_TEST)",
    )
    thresholds = parser.add_mutually_exclusive_group()
    thresholds.add_argument(
        "--ood-threshold",
        type=float,
        default=None,
        help="flag detections whose ID score is below it as OOD (VOS.OOD_THRESHOLD); "
        "default: the config's",
    )
    thresholds.add_argument(
        "--ood-threshold-from",
        metavar="RESULTS",
        help="take the OOD threshold that evaluation derived for VOS.SCORE (the score 95%% of "
        "kept ID boxes reach) from an ood_results.json or the folder holding it "
        "(OUTPUT_DIR/inference)",
    )
    parser.add_argument(
        "--scores",
        nargs="+",
        default=[],
        metavar="NAME",
        help="more registered scores to compute and record (each as <name>_score); "
        "VOS.SCORE, the drawn one, is always computed",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


def separate_overrides(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.Namespace:
    """``--scores`` ends at the first config key (upper case): ``--scores msp knn
    MODEL.WEIGHTS w.pth`` computes msp and knn and loads w.pth. An option after the overrides
    would be read as a key, so it is refused, naming it."""
    for index, name in enumerate(args.scores):
        if name[:1].isupper():
            if index == 0:
                parser.error(f"--scores needs a score name before the overrides, got {name}")
            args.opts = args.scores[index:] + args.opts
            args.scores = args.scores[:index]
            break
    options = [token for token in args.opts[::2] if token.startswith("--")]
    if options:
        parser.error(f"{options[0]} comes after the KEY VALUE overrides: put options before them")
    return args


def setup(args: argparse.Namespace) -> CfgNode:
    """The config of ``--config-file`` and the overrides (:func:`load_vos_config`), with the
    command line's thresholds, computing only ``VOS.SCORE`` and ``--scores``.

    Raises:
        FileNotFoundError, ValueError: one line naming the config mistake or missing file.
    """
    cfg = load_vos_config(args.config_file, args.opts).clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.VOS.EVAL.SCORES = tuple(dict.fromkeys([cfg.VOS.SCORE, *args.scores]))
    if args.ood_threshold is not None:
        cfg.VOS.OOD_THRESHOLD = args.ood_threshold
    if args.ood_threshold_from is not None:
        cfg.VOS.OOD_THRESHOLD = derived_ood_threshold(args.ood_threshold_from, cfg.VOS.SCORE)
        _warn_if_another_models_threshold(args.ood_threshold_from, cfg.MODEL.WEIGHTS)
    validate_vos_config(cfg)
    cfg.freeze()
    return cfg


def _warn_if_another_models_threshold(results: str, weights: str) -> None:
    """One warning line when ``--ood-threshold-from`` is not the evaluation of the weights'
    own training run (``OUTPUT_DIR/inference`` beside ``OUTPUT_DIR/model_final.pth``)."""
    folder = os.path.dirname(results) if os.path.isfile(results) else results
    run = os.path.dirname(os.path.abspath(folder.rstrip(os.sep)))
    if "://" in weights or run == os.path.dirname(os.path.abspath(weights)):
        return
    logger.warning(
        "--ood-threshold-from %s is the evaluation of the run in %s, but MODEL.WEIGHTS %s is "
        "another model's: its threshold was derived for that run's scores.",
        results,
        run,
        weights,
    )


def build_predictor(cfg: CfgNode) -> DefaultPredictor:
    """A predictor whose weights fit the config and hold the statistics its scores read.

    Raises:
        FileNotFoundError: MODEL.WEIGHTS names no file.
        ValueError: the weights do not fit the model, or lack a score's statistics.
    """
    check_weights(cfg.MODEL.WEIGHTS)
    # DefaultPredictor would load MODEL.WEIGHTS leniently (skipping what does not fit, with
    # Detectron2's warnings): build it without weights and load them once, strictly. The crop
    # encoder keeps its source of pretrained weights ("" means MODEL.WEIGHTS).
    unloaded = cfg.clone()
    unloaded.defrost()
    unloaded.VOS.CROP_FEATURES.WEIGHTS = cfg.VOS.CROP_FEATURES.WEIGHTS or cfg.MODEL.WEIGHTS
    unloaded.MODEL.WEIGHTS = ""
    predictor = DefaultPredictor(unloaded)
    load_fitting_weights(predictor.model, cfg.MODEL.WEIGHTS)
    check_score_statistics(predictor.model.roi_heads, cfg.VOS.EVAL.SCORES)
    return predictor


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo.

    Args:
        argv (Sequence[str] or None): command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        int: 0 when every image was processed, 1 when some were skipped, 130 when interrupted.
        A usage error exits with 2 before any image is read.
    """
    parser = build_parser()
    args = separate_overrides(parser, parser.parse_args(argv))
    setup_logger(name="detectron2")
    setup_logger(name="vos_det")
    try:
        cfg = setup(args)
        paths = collect_inputs(args.input)
        check_outputs(paths, args.output, [DETECTIONS_FILE])
        predictor = build_predictor(cfg)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))  # exits with status 2
    os.makedirs(args.output, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".demo-", dir=args.output)
    try:
        records, failed = _run(cfg, predictor, paths, staging)
        if records:
            _publish(staging, args.output, records)
    except KeyboardInterrupt:
        logger.error("Interrupted: nothing was written to %s; run the same command again.", args.output)
        return 130
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if failed:
        logger.error("%d image(s) skipped: %s", len(failed), ", ".join(failed))
        return 1
    return 0


def _run(cfg: CfgNode, predictor: DefaultPredictor, paths: List[str], staging: str):
    """Detect on every image; annotated pictures go to ``staging``.

    Returns:
        tuple: (the ``detections.json`` records of the processed images, the skipped paths).
    """
    class_names = class_names_of(cfg)
    flagging = cfg.VOS.OOD_THRESHOLD is not None
    extra = [name for name in cfg.VOS.EVAL.SCORES if name != cfg.VOS.SCORE]
    records, failed = [], []
    for path in paths:
        start = time.perf_counter()
        try:
            image = read_image(path)
            instances = detect(predictor, image)
        except SkippedImage as error:
            logger.warning("%s: %s; skipped", path, error)
            failed.append(path)
            continue
        flag_non_finite_scores(path, instances, flagging)
        drawn = draw_open_set_detections(image[:, :, ::-1], instances, class_names, None)
        cv2.imwrite(os.path.join(staging, os.path.basename(path)), drawn[:, :, ::-1])
        records.append(
            detections_record(path, *image.shape[:2], instances, class_names, extra)
        )
        flagged = f"{int(instances.is_ood.sum())} flagged OOD" if flagging else "no OOD flag"
        logger.info(
            "%s: %d detections, %s (%.2f s)", path, len(instances), flagged, time.perf_counter() - start
        )
    return records, failed


def _publish(staging: str, output: str, records: List[dict]) -> None:
    """Move the staged pictures into ``output`` and write ``detections.json`` there."""
    for name in os.listdir(staging):
        os.replace(os.path.join(staging, name), os.path.join(output, name))
    with open(os.path.join(staging, DETECTIONS_FILE), "w") as f:
        json.dump(records, f, indent=1, allow_nan=False)
    os.replace(os.path.join(staging, DETECTIONS_FILE), os.path.join(output, DETECTIONS_FILE))
    logger.info("Wrote %d annotated images and %s to %s", len(records), DETECTIONS_FILE, output)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before the images (while the model loads): nothing written
        sys.exit("demo.py: interrupted before any image; nothing was written.")
