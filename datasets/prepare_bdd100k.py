#!/usr/bin/env python
"""Convert BDD100K detection labels to COCO format with the 10 BDD detection classes.

Reads the BDD100K label list (``[{"name": "a.jpg", "labels": [{"category": "car", "box2d":
{"x1", "y1", "x2", "y2"}}, ...]}, ...]``; both the 2018 ``bdd100k_labels_images_<split>.json``
and the 2020 ``det_20/det_<split>.json`` files have this shape). Labels without ``box2d`` and
categories outside the 10 classes ("drivable area", "lane", "other vehicle", ...) are ignored;
the older names "person", "bike" and "motor" become "pedestrian", "bicycle" and "motorcycle".
Every listed image is kept, with or without boxes. Images are 1280x720 unless --read-sizes.

Example:
    python datasets/prepare_bdd100k.py --split val --bdd-root datasets/bdd100k
"""

import argparse
import os
from collections import Counter
from typing import Dict, List, Optional, Tuple

from vos_det.data.ood_datasets import (
    ID_CLASSES,
    default_datasets_root,
    load_json,
    read_image_size,
    write_json,
)

BDD_CLASSES = ID_CLASSES["bdd"]
# Category names of the 2018 release -> the names of the 10 detection classes.
CATEGORY_ALIASES = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle"}
BDD_IMAGE_SIZE = (720, 1280)  # (height, width) of every BDD100K image, in pixels

_LABELS_HINT = "Download the BDD100K detection labels as datasets/README.md describes."


def convert_labels(
    frames: List[dict], image_dir: Optional[str] = None
) -> Tuple[dict, Dict[str, int], Counter]:
    """Convert BDD100K frames to a COCO-format detection dict.

    Args:
        frames (list[dict]): BDD100K label entries (``name``, optional ``labels``).
        image_dir (str or None): folder to read image sizes from; None assumes 1280x720.

    Returns:
        tuple[dict, dict[str, int], Counter]: the COCO dict (image ids 1..N in input order,
            category ids 1..10 in ``ID_CLASSES["bdd"]`` order, boxes as XYWH in pixels), the
            counts "images", "boxes", "ignored_labels" and "degenerate_boxes", and the number of
            ignored labels per category name.
    """
    images = [_image_entry(i, frame, image_dir) for i, frame in enumerate(frames, start=1)]
    annotations, ignored, degenerate = [], Counter(), 0
    for image_id, frame in enumerate(frames, start=1):
        for label in frame.get("labels") or []:
            category = CATEGORY_ALIASES.get(label.get("category"), label.get("category"))
            if category not in BDD_CLASSES or "box2d" not in label:
                ignored[str(label.get("category"))] += 1
                continue
            box = _xywh(label["box2d"])
            if box[2] <= 0 or box[3] <= 0:
                degenerate += 1
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": BDD_CLASSES.index(category) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(BDD_CLASSES)]
    counts = {
        "images": len(images),
        "boxes": len(annotations),
        "ignored_labels": sum(ignored.values()),
        "degenerate_boxes": degenerate,
    }
    return {"images": images, "annotations": annotations, "categories": categories}, counts, ignored


def _image_entry(image_id: int, frame: dict, image_dir: Optional[str]) -> dict:
    """COCO ``images`` entry of a frame; the size is read from ``image_dir`` when given."""
    if image_dir is None:
        height, width = BDD_IMAGE_SIZE
    else:
        height, width = read_image_size(os.path.join(image_dir, frame["name"]))
    return {"id": image_id, "file_name": frame["name"], "height": height, "width": width}


def _xywh(box2d: Dict[str, float]) -> List[float]:
    """Convert a BDD ``box2d`` (x1, y1, x2, y2 in pixels) to COCO's [x, y, width, height]."""
    x1, y1, x2, y2 = (float(box2d[key]) for key in ("x1", "y1", "x2", "y2"))
    return [x1, y1, x2 - x1, y2 - y1]


def read_frames(path: str) -> List[dict]:
    """Read and check a BDD100K label file.

    Args:
        path (str): JSON file holding a list of frames.

    Returns:
        list[dict]: the frames, each with a ``name``.
    """
    frames = load_json(path, _LABELS_HINT)
    if not isinstance(frames, list) or not all(
        isinstance(frame, dict) and "name" in frame for frame in frames
    ):
        raise ValueError(
            f"{path} is not a BDD100K detection label file: expected a JSON list of "
            '{"name": ..., "labels": [...]} entries. Pass the detection labels as --labels.'
        )
    return frames


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line; paths default to the layout under $DETECTRON2_DATASETS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["train", "val"], default="val")
    parser.add_argument(
        "--bdd-root",
        default=os.path.join(default_datasets_root(), "bdd100k"),
        help="BDD100K folder (default: $DETECTRON2_DATASETS/bdd100k)",
    )
    parser.add_argument(
        "--labels",
        help="label file (default: <bdd-root>/labels/bdd100k_labels_images_<split>.json)",
    )
    parser.add_argument(
        "--output",
        help="output file (default: <bdd-root>/annotations/bdd100k_det_<split>_coco.json)",
    )
    parser.add_argument(
        "--read-sizes",
        action="store_true",
        help="read each image's size from <bdd-root>/images/100k/<split> instead of 1280x720",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, int]:
    """Write the COCO-format BDD100K split and print the image and box counts.

    Args:
        argv (list[str] or None): command-line arguments (None: ``sys.argv``).

    Returns:
        dict[str, int]: "images", "boxes", "ignored_labels" and "degenerate_boxes" counts.
    """
    args = parse_args(argv)
    labels = args.labels or os.path.join(
        args.bdd_root, "labels", f"bdd100k_labels_images_{args.split}.json"
    )
    output = args.output or os.path.join(
        args.bdd_root, "annotations", f"bdd100k_det_{args.split}_coco.json"
    )
    image_dir = os.path.join(args.bdd_root, "images", "100k", args.split)
    coco, counts, ignored = convert_labels(
        read_frames(labels), image_dir if args.read_sizes else None
    )
    write_json(coco, output)
    if ignored:
        print(f"Ignored labels by category: {dict(sorted(ignored.items()))}")
    print(
        f"{labels}: {counts['images']} images, {counts['boxes']} boxes kept, "
        f"{counts['ignored_labels']} labels of other categories ignored, "
        f"{counts['degenerate_boxes']} empty boxes dropped. Wrote {output}"
    )
    return counts


if __name__ == "__main__":
    main()
