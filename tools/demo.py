#!/usr/bin/env python3
"""Run a trained VOS detector on images; write annotated pictures and ``detections.json``.

Every box is labelled with its class, class probability and ID-ness (``id_scores``), green when
in-distribution and red when flagged OOD (``id_scores`` below ``VOS.OOD_THRESHOLD``).

    python tools/demo.py --config-file configs/VOC-Detection/vos_R_50_FPN.yaml \\
        --input images/ street.jpg "more/*.png" --output demo_out \\
        --ood-threshold-from output/vos/inference MODEL.WEIGHTS output/vos/model_final.pth

Exit status: 0 when every image was processed; 1 when some were skipped, each named in a
warning: unreadable or damaged (truncated) files, images the detector cannot take (e.g. 1 x 3000
pixels); 2 for a usage error (no image matched an input, weights not found, a confidence
threshold outside [0, 1], an output file that would overwrite an input). ``detections.json``
holds the processed images; its non-finite numbers are ``null``, and a box with a non-finite ID
score is flagged OOD.
"""

import argparse
import glob
import json
import logging
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import vos_det  # first: it silences known warnings of the imports below
import cv2
import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.structures import Instances
from detectron2.utils.logger import setup_logger
from PIL import Image, UnidentifiedImageError

from vos_det.data.ood_datasets import IMAGE_EXTENSIONS
from vos_det.evaluation import EvaluationFolder
from vos_det.utils import check_weights, draw_open_set_detections

logger = logging.getLogger("vos_det.demo")

DETECTIONS_FILE = "detections.json"


class SkippedImage(Exception):
    """An image the demo cannot process; the message says why."""


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
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from the defaults, VOS keys, ``--config-file``, ``KEY VALUE`` overrides and flags.

    Args:
        args (Namespace): parsed command line.

    Returns:
        CfgNode: the frozen config (``MODEL.DEVICE`` is the config's unless overridden).
    """
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    if args.ood_threshold is not None:
        cfg.VOS.OOD_THRESHOLD = args.ood_threshold
    if args.ood_threshold_from is not None:
        cfg.VOS.OOD_THRESHOLD = derived_ood_threshold(args.ood_threshold_from, cfg.VOS.SCORE)
    vos_det.validate_vos_config(cfg)
    cfg.freeze()
    return cfg


def derived_ood_threshold(results: str, score: str) -> float:
    """The ID-ness threshold evaluation derived for ``score`` (``id_score_thresholds``).

    Args:
        results (str): an ``ood_results.json`` file or the folder holding it.
        score (str): the score the detections are flagged by (``VOS.SCORE``).

    Raises:
        FileNotFoundError: if there is no results file there.
        ValueError: if the file is not OOD results or has no threshold for ``score``.
    """
    folder = os.path.dirname(results) if os.path.isfile(results) else results
    result = EvaluationFolder(folder).read_results()
    if score not in result.id_score_thresholds:
        raise ValueError(
            f"{EvaluationFolder(folder).results_file} has no OOD threshold for the {score} score "
            f"(VOS.SCORE); it has thresholds for {sorted(result.id_score_thresholds)}: set "
            "VOS.SCORE to one of them, or evaluate with that score in VOS.EVAL.SCORES."
        )
    threshold = result.id_score_thresholds[score]
    logger.info("OOD threshold of the %s score from %s: %.6g", score, folder, threshold)
    return threshold


def collect_inputs(inputs: Sequence[str]) -> List[str]:
    """Expand image paths, folders and glob patterns into image paths, in order, without repeats.

    Args:
        inputs (Sequence[str]): the ``--input`` values.

    Returns:
        list[str]: the image paths; folders contribute their files with an image extension,
        sorted; patterns every file they match, sorted.

    Raises:
        FileNotFoundError: an input matches no image (the message names it).
        ValueError: two images share a file name, so their outputs would collide.
    """
    paths: List[str] = []
    by_name: Dict[str, str] = {}
    for pattern in inputs:
        if os.path.isdir(pattern):
            matched = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(pattern, name))
            )
        elif os.path.isfile(pattern):
            matched = [pattern]
        else:
            matched = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
        if not matched:
            raise FileNotFoundError(
                f"--input {pattern!r} matched no image (expected an image file, a folder "
                f"holding {'/'.join(IMAGE_EXTENSIONS)} files, or a glob pattern)"
            )
        for path in matched:
            name = os.path.basename(path)
            if name not in by_name:
                by_name[name] = path
                paths.append(path)
            elif os.path.abspath(by_name[name]) != os.path.abspath(path):
                raise ValueError(
                    f"{by_name[name]} and {path} share the file name {name!r}: their annotated "
                    "images would overwrite each other in --output; run them separately"
                )
    return paths


def output_path(output: str, image_path: str) -> str:
    """Returns: where the annotated picture of ``image_path`` goes in the ``output`` folder."""
    return os.path.join(output, os.path.basename(image_path))


def check_outputs(paths: Sequence[str], output: str) -> None:
    """Refuse an ``--output`` folder where the demo would overwrite one of its inputs.

    Files are compared by identity (device and inode), so different spellings of a folder,
    symbolic and hard links are caught.

    Args:
        paths (Sequence[str]): the input images.
        output (str): the ``--output`` folder.

    Raises:
        ValueError: an annotated picture or ``detections.json`` would replace an input (the
            message names both).
    """
    inputs = {_file_identity(path): path for path in paths}
    targets = [output_path(output, path) for path in paths]
    for target in targets + [os.path.join(output, DETECTIONS_FILE)]:
        if os.path.exists(target) and _file_identity(target) in inputs:
            raise ValueError(
                f"--output {output}: writing {target} would overwrite the input "
                f"{inputs[_file_identity(target)]}; choose an --output folder that holds none "
                "of the input images"
            )


def _file_identity(path: str) -> Tuple[int, int]:
    """Returns: the (device, inode) of the file ``path`` names, through symbolic links."""
    status = os.stat(path)
    return status.st_dev, status.st_ino


def read_image(path: str) -> np.ndarray:
    """Read an image completely.

    Args:
        path (str): image file.

    Returns:
        ndarray: (H, W, 3) uint8 BGR image.

    Raises:
        SkippedImage: the file is no image OpenCV reads, or its data is damaged (a truncated
            JPEG, which OpenCV decodes partly, filling the rest with grey).
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SkippedImage("cannot read the image (corrupt or not an image)")
    try:
        with Image.open(path) as complete:
            complete.load()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        pass  # a format or a size PIL refuses: OpenCV's reading above is all there is
    except OSError as error:
        raise SkippedImage(f"the image file is damaged ({error})") from error
    return image


def detect(predictor: DefaultPredictor, image: np.ndarray) -> Instances:
    """Run the detector on one image.

    Args:
        predictor (DefaultPredictor): the detector.
        image (ndarray): (H, W, 3) uint8 BGR image.

    Returns:
        Instances: the detections on the CPU.

    Raises:
        SkippedImage: the detector cannot take the image, e.g. one of 1 x 3000 pixels, whose
            short side the test-time resize rounds down to 0.
    """
    try:
        return predictor(image)["instances"].to("cpu")
    except (ValueError, RuntimeError) as error:
        height, width = image.shape[:2]
        raise SkippedImage(
            f"the detector cannot take this image of {height} x {width} pixels (height x width): "
            f"{error}"
        ) from error


def class_names_of(cfg: CfgNode) -> List[str]:
    """The ID class names from the metadata of the config's datasets, else ``class <i>``.

    Args:
        cfg (CfgNode): the config.

    Returns:
        list[str]: ``MODEL.ROI_HEADS.NUM_CLASSES`` names.
    """
    for dataset in tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST):
        names = MetadataCatalog.get(dataset).get("thing_classes")
        if names is not None and len(names) == cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            return list(names)
    return [f"class {i}" for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)]


def detections_record(
    file_name: str, height: int, width: int, instances: Instances, class_names: Sequence[str]
) -> dict:
    """One image's entry of ``detections.json``.

    Args:
        file_name (str): the input image path.
        height (int): image height in pixels.
        width (int): image width in pixels.
        instances (Instances): the detections on the CPU.
        class_names (Sequence[str]): names indexed by ``pred_classes``.

    Returns:
        dict: ``file_name``, ``height``, ``width`` and ``detections``, each with ``box``
        (x0, y0, x1, y1 in input pixels), ``class``, ``class_id``, ``score``, ``id_score`` and
        ``is_ood`` (None when no OOD threshold is set). Non-finite numbers are None (JSON
        ``null``).
    """
    is_ood = instances.is_ood.tolist() if instances.has("is_ood") else [None] * len(instances)
    detections = [
        {
            "box": box,
            "class": class_names[class_id],
            "class_id": class_id,
            "score": score,
            "id_score": id_score,
            "is_ood": flag,
        }
        for box, class_id, score, id_score, flag in zip(
            instances.pred_boxes.tensor.tolist(),
            instances.pred_classes.tolist(),
            instances.scores.tolist(),
            instances.id_scores.tolist(),
            is_ood,
        )
    ]
    record = {"file_name": file_name, "height": height, "width": width, "detections": detections}
    return _finite_or_none(record)


def _finite_or_none(value: Any) -> Any:
    """``value`` (JSON data) with its non-finite floats replaced by None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def flag_non_finite_scores(path: str, instances: Instances, flagging: bool) -> None:
    """Warn about boxes whose ID score is not finite and, when flagging, flag them OOD: an
    unknown score must never count as in-distribution.

    Args:
        path (str): the image, named in the warning.
        instances (Instances): its detections on the CPU; ``is_ood`` is updated in place.
        flagging (bool): an OOD threshold is set (``instances`` has ``is_ood``).
    """
    non_finite = ~torch.isfinite(instances.id_scores)
    count = int(non_finite.sum())
    if not count:
        return
    if flagging:
        instances.is_ood = instances.is_ood | non_finite
    logger.warning(
        "%s: %d of %d boxes have a non-finite ID score (written as null%s)",
        path,
        count,
        len(instances),
        ", flagged OOD" if flagging else "",
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo.

    Args:
        argv (Sequence[str] or None): command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        int: 0 when every image was processed, 1 when some were skipped. A usage error (no
        image matched an input, weights not found, invalid config or threshold value, an output
        that would overwrite an input) exits with 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logger(name="detectron2")
    setup_logger(name="vos_det")
    try:
        cfg = setup(args)
        paths = collect_inputs(args.input)
        check_outputs(paths, args.output)
        check_weights(cfg.MODEL.WEIGHTS)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))  # exits with status 2
    predictor = DefaultPredictor(cfg)
    class_names = class_names_of(cfg)
    flagging = cfg.VOS.OOD_THRESHOLD is not None
    os.makedirs(args.output, exist_ok=True)
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
        cv2.imwrite(output_path(args.output, path), drawn[:, :, ::-1])
        records.append(detections_record(path, *image.shape[:2], instances, class_names))
        flagged = f"{int(instances.is_ood.sum())} flagged OOD" if flagging else "no OOD flag"
        logger.info(
            "%s: %d detections, %s (%.2f s)",
            path,
            len(instances),
            flagged,
            time.perf_counter() - start,
        )
    with open(os.path.join(args.output, DETECTIONS_FILE), "w") as f:
        json.dump(records, f, indent=1, allow_nan=False)
    logger.info(
        "Wrote %d annotated images and %s to %s",
        len(records),
        DETECTIONS_FILE,
        args.output,
    )
    if failed:
        logger.error("%d image(s) skipped: %s", len(failed), ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
