#!/usr/bin/env python
"""Build OpenImages-OOD: a COCO-format list of OpenImages images with no object of the ID classes.

Two sources of images:

* Annotation CSVs (``--boxes`` and ``--class-descriptions``): every image with at least one box
  is a candidate; images with a box whose class corresponds to an ID class are dropped.
* Without CSVs: every image under ``--image-dir`` is kept (a folder you curated yourself, such as
  the OpenImages OOD images released with VOS).

Images are expected as ``<image-dir>/<ImageID>.jpg``. A candidate whose file is not there is
reported as missing and dropped. Height and width are read from the image headers.

Example:
    python datasets/prepare_openimages_ood.py --benchmark voc --openimages-root \\
        datasets/OpenImages --boxes validation-annotations-bbox.csv \\
        --class-descriptions oidv7-class-descriptions-boxable.csv
"""

import argparse
import csv
import os
from typing import Dict, Iterable, List, Optional, Set, Tuple

from vos_det.data.ood_datasets import (
    default_datasets_root,
    list_image_files,
    read_image_size,
    require_path,
    write_json,
)

# ID class -> OpenImages display names (matched case-insensitively) that count as that class.
# OpenImages labels boxes with the most specific class it has, so the common subclasses are
# listed too (e.g. "Man" for person, "Duck" for bird). Extend these lists for a stricter split.
# fmt: off
_PERSON = ["Person", "Man", "Woman", "Boy", "Girl", "Human body", "Human face", "Human head"]
_CAR = ["Car", "Taxi", "Limousine", "Van", "Ambulance", "Land vehicle",
        "Vehicle registration plate"]
VOC_TO_OPENIMAGES: Dict[str, List[str]] = {
    "aeroplane": ["Airplane", "Aircraft"],
    "bicycle": ["Bicycle"],
    "bird": ["Bird", "Eagle", "Owl", "Duck", "Goose", "Parrot", "Penguin", "Swan", "Chicken",
             "Turkey", "Ostrich", "Falcon", "Sparrow", "Magpie", "Woodpecker", "Blue jay",
             "Canary", "Raven"],
    "boat": ["Boat", "Barge", "Canoe", "Gondola", "Jet ski", "Watercraft", "Submarine"],
    "bottle": ["Bottle"],
    "bus": ["Bus"],
    "car": _CAR,
    "cat": ["Cat"],
    "chair": ["Chair"],
    "cow": ["Cattle", "Bull"],
    "diningtable": ["Table", "Kitchen & dining room table", "Coffee table"],
    "dog": ["Dog"],
    "horse": ["Horse"],
    "motorbike": ["Motorcycle"],
    "person": _PERSON,
    "pottedplant": ["Houseplant", "Flowerpot"],
    "sheep": ["Sheep"],
    "sofa": ["Couch", "Sofa bed", "Studio couch"],
    "train": ["Train"],
    "tvmonitor": ["Television", "Computer monitor"],
}
BDD_TO_OPENIMAGES: Dict[str, List[str]] = {
    "pedestrian": _PERSON,
    "rider": _PERSON,
    "car": _CAR,
    "truck": ["Truck"],
    "bus": ["Bus"],
    "train": ["Train"],
    "motorcycle": ["Motorcycle"],
    "bicycle": ["Bicycle"],
    "traffic light": ["Traffic light"],
    "traffic sign": ["Traffic sign", "Stop sign"],
}
# fmt: on
ID_TO_OPENIMAGES = {"voc": VOC_TO_OPENIMAGES, "bdd": BDD_TO_OPENIMAGES}

_CSV_HINT = "Download the OpenImages annotation CSVs as datasets/README.md describes."


def read_class_descriptions(path: str) -> Dict[str, str]:
    """Read an OpenImages class-descriptions CSV (``LabelName,DisplayName``; header optional).

    Args:
        path (str): CSV file.

    Returns:
        dict[str, str]: label MID (e.g. "/m/01g317") -> display name (e.g. "Person").
    """
    require_path(path, "file", _CSV_HINT)
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and rows[0][:2] == ["LabelName", "DisplayName"]:
        rows = rows[1:]
    if any(len(row) < 2 for row in rows):
        raise ValueError(
            f"{path} is not a class-descriptions CSV: every row needs a label MID and a display "
            "name (LabelName,DisplayName)."
        )
    return {row[0]: row[1] for row in rows}


def id_label_mids(descriptions: Dict[str, str], benchmark: str) -> Set[str]:
    """Find the label MIDs whose display name corresponds to an ID class.

    Args:
        descriptions (dict[str, str]): label MID -> display name.
        benchmark (str): "voc" or "bdd".

    Returns:
        set[str]: MIDs of the OpenImages classes mapped to an ID class.
    """
    wanted = {name.lower() for names in ID_TO_OPENIMAGES[benchmark].values() for name in names}
    return {mid for mid, name in descriptions.items() if name.lower() in wanted}


def scan_boxes(path: str, excluded_mids: Set[str]) -> Tuple[Set[str], Set[str]]:
    """Read a box-annotations CSV and find the images with boxes, and those with an ID box.

    Args:
        path (str): CSV with at least the columns ``ImageID`` and ``LabelName``.
        excluded_mids (set[str]): label MIDs of the ID classes.

    Returns:
        tuple[set[str], set[str]]: ImageIDs with any box, ImageIDs with a box of an ID class.
    """
    require_path(path, "file", _CSV_HINT)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"ImageID", "LabelName"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {sorted(missing)}; pass an OpenImages "
                "box-annotations CSV (ImageID,Source,LabelName,...) as --boxes."
            )
        boxed, with_id_object = set(), set()
        for row in reader:
            boxed.add(row["ImageID"])
            if row["LabelName"] in excluded_mids:
                with_id_object.add(row["ImageID"])
    return boxed, with_id_object


def image_list(image_dir: str, file_names: Iterable[str]) -> Tuple[dict, List[str]]:
    """Build a COCO-format image list from files under ``image_dir``, skipping missing ones.

    Args:
        image_dir (str): folder the file names are relative to.
        file_names (iterable[str]): candidate image files, relative to ``image_dir``.

    Returns:
        tuple[dict, list[str]]: the COCO-format dict (``images`` with ids 1..N, no annotations)
            and the file names that were not found.
    """
    images, missing = [], []
    for file_name in file_names:
        path = os.path.join(image_dir, file_name)
        if not os.path.isfile(path):
            missing.append(file_name)
            continue
        height, width = read_image_size(path)
        images.append(
            {"id": len(images) + 1, "file_name": file_name, "height": height, "width": width}
        )
    return {"images": images, "annotations": [], "categories": []}, missing


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line; paths default to the layout under $DETECTRON2_DATASETS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--benchmark",
        choices=sorted(ID_TO_OPENIMAGES),
        default="voc",
        help="ID benchmark whose classes must be absent (default: voc)",
    )
    parser.add_argument(
        "--openimages-root",
        default=os.path.join(default_datasets_root(), "OpenImages"),
        help="OpenImages folder (default: $DETECTRON2_DATASETS/OpenImages)",
    )
    parser.add_argument("--image-dir", help="image folder (default: <openimages-root>/images)")
    parser.add_argument("--boxes", help="box-annotations CSV (ImageID, LabelName columns)")
    parser.add_argument("--class-descriptions", help="class-descriptions CSV (MID, name)")
    parser.add_argument(
        "--output",
        help="output file (default: <openimages-root>/openimages_ood_wrt_<benchmark>.json)",
    )
    args = parser.parse_args(argv)
    if (args.boxes is None) != (args.class_descriptions is None):
        parser.error("--boxes and --class-descriptions go together; pass both or neither.")
    return args


def candidate_files(args: argparse.Namespace, image_dir: str) -> Tuple[List[str], Dict[str, int]]:
    """List the candidate images: from the CSVs when given, else every image in the folder.

    Args:
        args (argparse.Namespace): parsed command line.
        image_dir (str): image folder.

    Returns:
        tuple[list[str], dict[str, int]]: candidate file names relative to ``image_dir`` and the
            counts "total" and "dropped_id_object".
    """
    if args.boxes is None:
        require_path(image_dir, "folder", "Put the OOD images there or pass --image-dir.")
        files = list_image_files(image_dir)
        return files, {"total": len(files), "dropped_id_object": 0}
    descriptions = read_class_descriptions(args.class_descriptions)
    boxed, with_id_object = scan_boxes(args.boxes, id_label_mids(descriptions, args.benchmark))
    files = [f"{image_id}.jpg" for image_id in sorted(boxed - with_id_object)]
    return files, {"total": len(boxed), "dropped_id_object": len(with_id_object)}


def main(argv: Optional[List[str]] = None) -> Dict[str, int]:
    """Write the OpenImages-OOD image list and print how many images were kept and dropped.

    Args:
        argv (list[str] or None): command-line arguments (None: ``sys.argv``).

    Returns:
        dict[str, int]: "total", "kept", "dropped_id_object" and "missing" image counts.
    """
    args = parse_args(argv)
    image_dir = args.image_dir or os.path.join(args.openimages_root, "images")
    output = args.output or os.path.join(
        args.openimages_root, f"openimages_ood_wrt_{args.benchmark}.json"
    )
    files, counts = candidate_files(args, image_dir)
    split, missing = image_list(image_dir, files)
    write_json(split, output)
    counts.update(kept=len(split["images"]), missing=len(missing))
    print(
        f"{counts['total']} candidate images; kept {counts['kept']}, dropped "
        f"{counts['dropped_id_object']} with a {args.benchmark.upper()} object and "
        f"{counts['missing']} missing from {image_dir}. Wrote {output}"
    )
    if missing:
        print(f"First missing images: {', '.join(missing[:5])}")
    return counts


if __name__ == "__main__":
    main()
