#!/usr/bin/env python
"""Build COCO-OOD: the COCO val2017 images that hold no object of the ID benchmark's classes.

An image is kept when it has at least one annotation (an OOD object to detect) and none of its
annotations (crowd regions included) belongs to a COCO category that corresponds to an ID class.
Images without any annotation are dropped: nothing in them tests the detector. The output is a
COCO-format file with the kept images, their annotations and all COCO categories.

Example:
    python datasets/prepare_coco_ood.py --benchmark voc --coco-root datasets/coco
"""

import argparse
import os
from typing import Dict, List, Optional, Set, Tuple

from vos_det.data.ood_datasets import default_datasets_root, load_json, write_json

# ID class -> the COCO category names that count as that class.
# fmt: off
VOC_TO_COCO: Dict[str, List[str]] = {
    "aeroplane": ["airplane"], "bicycle": ["bicycle"], "bird": ["bird"], "boat": ["boat"],
    "bottle": ["bottle"], "bus": ["bus"], "car": ["car"], "cat": ["cat"], "chair": ["chair"],
    "cow": ["cow"], "diningtable": ["dining table"], "dog": ["dog"], "horse": ["horse"],
    "motorbike": ["motorcycle"], "person": ["person"], "pottedplant": ["potted plant"],
    "sheep": ["sheep"], "sofa": ["couch"], "train": ["train"], "tvmonitor": ["tv"],
}
# COCO has no generic traffic sign; its only sign category, "stop sign", is a BDD traffic sign.
BDD_TO_COCO: Dict[str, List[str]] = {
    "pedestrian": ["person"], "rider": ["person"], "car": ["car"], "truck": ["truck"],
    "bus": ["bus"], "train": ["train"], "motorcycle": ["motorcycle"], "bicycle": ["bicycle"],
    "traffic light": ["traffic light"], "traffic sign": ["stop sign"],
}
# fmt: on
ID_TO_COCO = {"voc": VOC_TO_COCO, "bdd": BDD_TO_COCO}


def id_category_ids(categories: List[dict], benchmark: str) -> Set[int]:
    """Find the COCO category ids that correspond to the benchmark's ID classes.

    Args:
        categories (list[dict]): COCO ``categories`` entries (``id``, ``name``).
        benchmark (str): "voc" or "bdd".

    Returns:
        set[int]: ids of the COCO categories mapped to an ID class.
    """
    ids_by_name = {category["name"]: category["id"] for category in categories}
    wanted = {name for names in ID_TO_COCO[benchmark].values() for name in names}
    missing = sorted(wanted - set(ids_by_name))
    if missing:
        raise ValueError(
            f"COCO categories {missing} are not in the annotation file; pass COCO's "
            "instances_val2017.json (80 categories) as --annotations."
        )
    return {ids_by_name[name] for name in wanted}


def build_ood_split(coco: dict, benchmark: str) -> Tuple[dict, Dict[str, int]]:
    """Select the COCO images with at least one annotation and no object of an ID class.

    Args:
        coco (dict): COCO instances annotations (``images``, ``annotations``, ``categories``).
        benchmark (str): "voc" or "bdd".

    Returns:
        tuple[dict, dict[str, int]]: the COCO-format OOD split (kept images, their annotations,
            all categories) and the image counts "total", "kept", "dropped_id_object" and
            "dropped_unannotated".
    """
    excluded_ids = id_category_ids(coco["categories"], benchmark)
    annotated = {annotation["image_id"] for annotation in coco["annotations"]}
    with_id_object = {
        annotation["image_id"]
        for annotation in coco["annotations"]
        if annotation["category_id"] in excluded_ids
    }
    kept = annotated - with_id_object
    split = {
        "info": {"description": f"COCO images with no object of a {benchmark.upper()} class"},
        "images": [image for image in coco["images"] if image["id"] in kept],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
        "categories": coco["categories"],
    }
    counts = {
        "total": len(coco["images"]),
        "kept": len(split["images"]),
        "dropped_id_object": len(with_id_object),
        "dropped_unannotated": len(coco["images"]) - len(annotated),
    }
    return split, counts


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line; paths default to the layout under $DETECTRON2_DATASETS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--benchmark",
        choices=sorted(ID_TO_COCO),
        default="voc",
        help="ID benchmark whose classes must be absent (default: voc)",
    )
    parser.add_argument(
        "--coco-root",
        default=os.path.join(default_datasets_root(), "coco"),
        help="COCO folder holding annotations/ and val2017/",
    )
    parser.add_argument(
        "--annotations",
        help="COCO instances file to filter "
        "(default: <coco-root>/annotations/instances_val2017.json)",
    )
    parser.add_argument(
        "--output",
        help="output file (default: <coco-root>/annotations/"
        "instances_val2017_ood_wrt_<benchmark>.json)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, int]:
    """Write the COCO-OOD split and print how many images were kept and dropped.

    Args:
        argv (list[str] or None): command-line arguments (None: ``sys.argv``).

    Returns:
        dict[str, int]: "total", "kept", "dropped_id_object" and "dropped_unannotated" counts.
    """
    args = parse_args(argv)
    annotations_dir = os.path.join(args.coco_root, "annotations")
    source = args.annotations or os.path.join(annotations_dir, "instances_val2017.json")
    output = args.output or os.path.join(
        annotations_dir, f"instances_val2017_ood_wrt_{args.benchmark}.json"
    )
    coco = load_json(source, "Download annotations_trainval2017.zip from cocodataset.org.")
    split, counts = build_ood_split(coco, args.benchmark)
    write_json(split, output)
    print(
        f"{source}: {counts['total']} images; kept {counts['kept']}, dropped "
        f"{counts['dropped_id_object']} with a {args.benchmark.upper()} object and "
        f"{counts['dropped_unannotated']} without annotations. Wrote {output}"
    )
    return counts


if __name__ == "__main__":
    main()
