#!/usr/bin/env python3
"""Run a trained VOS detector on images; write annotated pictures and ``detections.json``.

Every box is labelled with its class, class probability and ID-ness (``id_scores``), green when
in-distribution and red when flagged OOD (``id_scores`` below ``VOS.OOD_THRESHOLD``).

    python tools/demo.py --config-file configs/VOC-Detection/vos_R_50_FPN.yaml \\
        --input images/ street.jpg "more/*.png" --output demo_out \\
        --ood-threshold 0.5 MODEL.WEIGHTS output/vos/model_final.pth

Exit status: 0 when every image was processed, 1 when some could not be read (each is named in
a warning and skipped), 2 for a usage error (no image matched an input, weights not found).
"""

import argparse
import glob
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.structures import Instances
from detectron2.utils.logger import setup_logger

import vos_det
from vos_det.utils import draw_open_set_detections

logger = logging.getLogger("vos_det.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DETECTIONS_FILE = "detections.json"


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
        type=float,
        default=0.5,
        help="minimum class probability of a detection (MODEL.ROI_HEADS.SCORE_THRESH_TEST)",
    )
    parser.add_argument(
        "--ood-threshold",
        type=float,
        default=None,
        help="flag detections whose ID score is below it as OOD (VOS.OOD_THRESHOLD; "
        "negative = no flag); default: the config's",
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
    vos_det.validate_vos_config(cfg)
    cfg.freeze()
    return cfg


def check_weights(weights: str) -> None:
    """Raise ``FileNotFoundError`` unless ``weights`` names a local file or a URL.

    Args:
        weights (str): ``MODEL.WEIGHTS``.
    """
    if not weights:
        raise FileNotFoundError(
            "MODEL.WEIGHTS is empty: pass the trained model, e.g. "
            "MODEL.WEIGHTS output/vos/model_final.pth"
        )
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS file not found: {weights} (pass the path of a trained model, "
            "e.g. OUTPUT_DIR/model_final.pth)"
        )


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
        ``is_ood`` (None when no OOD threshold is set).
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
    return {"file_name": file_name, "height": height, "width": width, "detections": detections}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo.

    Args:
        argv (Sequence[str] or None): command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        int: 0 when every image was processed, 1 when some could not be read. A usage error
        (no image matched an input, weights not found, invalid config value) exits with 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logger(name="detectron2")
    setup_logger(name="vos_det")
    try:
        cfg = setup(args)
        paths = collect_inputs(args.input)
        check_weights(cfg.MODEL.WEIGHTS)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))  # exits with status 2
    predictor = DefaultPredictor(cfg)
    class_names = class_names_of(cfg)
    flagging = cfg.VOS.OOD_THRESHOLD >= 0
    os.makedirs(args.output, exist_ok=True)
    records, failed = [], []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            logger.warning("%s: cannot read the image (corrupt or not an image); skipped", path)
            failed.append(path)
            continue
        start = time.perf_counter()
        instances = predictor(image)["instances"].to("cpu")
        drawn = draw_open_set_detections(image[:, :, ::-1], instances, class_names, None)
        cv2.imwrite(os.path.join(args.output, os.path.basename(path)), drawn[:, :, ::-1])
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
        json.dump(records, f, indent=1)
    logger.info(
        "Wrote %d annotated images and %s to %s",
        len(records),
        DETECTIONS_FILE,
        args.output,
    )
    if failed:
        logger.error("%d image(s) could not be read: %s", len(failed), ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
