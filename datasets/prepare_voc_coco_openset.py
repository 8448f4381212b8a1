#!/usr/bin/env python
"""Build OpenDet's VOC-COCO open-set test sets from the raw VOC 2007 and COCO annotations.

OpenDet (Han et al., CVPR 2022; github.com/csuhan/opendet2) splits COCO's 80 classes into the VOC
classes and three groups of 20 (NON_VOC_GROUPS). Each set ``<output-dir>/<name>.json`` (COCO
format, for vos_det.data.open_set_datasets) holds every VOC 2007 test image and COCO train2017
images chosen by opendet2's rule (details in datasets/README.md):

* ``voc_coco_20_{40,60,80}_test`` (VOC-COCO-20/40/60): images with an object of the first 1/2/3
  non-VOC groups, no person and no object of a later group; per-class draw of 8000/16000/24000
  objects, then 5000/10000/15000 images drawn from their images.
* ``voc_coco_{2500,5000,10000,20000}_test`` (wilderness): that many images without VOC objects.

opendet2 drew without a seed and published its draws: --opendet2-lists takes them, else the draw
uses --seed. Categories: the 20 VOC classes (ids 1..20) and "unknown" (21), which every non-VOC
COCO object gets. VOC boxes: xmin and ymin minus 1 pixel, as Detectron2's VOC loader does;
"difficult" VOC objects get iscrowd=1 (ignored by evaluation); COCO crowd regions stay ordinary
objects, as in opendet2, unless --ignore-crowd. ``file_name`` is relative to the datasets root.
Image ids: COCO's own; VOC image NNNNNN gets 2007000000 + NNNNNN.

Example:
    python datasets/prepare_voc_coco_openset.py --root datasets
"""

import argparse
import os
import random
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from vos_det.data.builtin import VOC_COCO_DIR
from vos_det.data.ood_datasets import ID_CLASSES, default_datasets_root, load_json, write_json
from vos_det.data.open_set_datasets import UNKNOWN_CLASS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prepare_coco_ood import VOC_TO_COCO  # noqa: E402  (sibling script)

VOC_CLASSES: List[str] = ID_CLASSES["voc"]
UNKNOWN_ID = len(VOC_CLASSES) + 1  # category id of "unknown"; VOC classes are 1..20
VOC_IMAGE_ID_BASE = 2007000000  # a VOC 2007 image's id is this plus the number in its name
# COCO category name -> VOC class name, for the COCO categories that are VOC classes.
COCO_TO_VOC: Dict[str, str] = {coco: voc for voc, names in VOC_TO_COCO.items() for coco in names}
# The three groups of 20 non-VOC COCO classes, in opendet2's order.
# fmt: off
NON_VOC_GROUPS: Tuple[Tuple[str, ...], ...] = (
    ("truck", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench",
     "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie",
     "suitcase", "microwave", "oven", "toaster", "sink", "refrigerator"),
    ("frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
     "skateboard", "surfboard", "tennis racket", "banana", "apple", "sandwich", "orange",
     "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"),
    ("bed", "toilet", "laptop", "mouse", "remote", "keyboard", "cell phone", "book", "clock",
     "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "wine glass", "cup", "fork",
     "knife", "spoon", "bowl"),
)
# fmt: on
NON_VOC_CLASSES: Tuple[str, ...] = sum(NON_VOC_GROUPS, ())

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")  # VOC <bndbox> fields, 1-based inclusive pixels
_VOC_HINT = "Extract VOCtest_06-Nov-2007.tar into the datasets root (see datasets/README.md)."
_LISTS_HINT = "Pass opendet2's folder datasets/voc_coco_ann/ImageSets/Main as --opendet2-lists."
_COCO_FILE = "coco/annotations/instances_train2017.json"  # default, relative to the root
_COCO_HINT = "Unzip COCO's annotations_trainval2017.zip into <root>/coco (see datasets/README.md)."


@dataclass(frozen=True)
class Setting:
    """How one open-set test set picks its COCO images (class names after the VOC mapping).

    Attributes:
        name (str): registered dataset name (also opendet2's image-list name).
        title (str): readable name (the paper's, for VOC-COCO-20/40/60).
        wanted (frozenset[str]): an image qualifies only with an object of one of these classes.
        excluded (frozenset[str]): ... and with no object of these classes.
        objects (int or None): objects kept by the per-class first stage (None: no such stage).
        images (int): COCO images drawn (fewer if fewer qualify).
    """

    name: str
    title: str
    wanted: FrozenSet[str]
    excluded: FrozenSet[str]
    objects: Optional[int]
    images: int


def _class_setting(name: str, groups: int) -> Setting:
    """VOC-COCO-(20 * groups): the first ``groups`` non-VOC groups; no person, no later group.
    opendet2's budgets grow with the groups: 8000 objects, then 5000 images per group."""
    later = set(sum(NON_VOC_GROUPS[groups:], ()))
    wanted = frozenset(sum(NON_VOC_GROUPS[:groups], ()))
    title = f"VOC-COCO-{20 * groups}"
    return Setting(name, title, wanted, frozenset(later | {"person"}), 8000 * groups, 5000 * groups)


def _wilderness_setting(name: str, images: int) -> Setting:
    """A wilderness set: ``images`` COCO images with no VOC object."""
    title = f"VOC-COCO wilderness, {images} COCO images"
    return Setting(name, title, frozenset(NON_VOC_CLASSES), frozenset(VOC_CLASSES), None, images)


SETTINGS: Dict[str, Setting] = {
    s.name: s
    for s in [_class_setting(f"voc_coco_20_{20 + 20 * g}_test", g) for g in (1, 2, 3)]
    + [_wilderness_setting(f"voc_coco_{k}_test", k) for k in (2500, 5000, 10000, 20000)]
}


def read_id_list(path: str, missing_hint: str) -> List[str]:
    """Read an image-id list (one id per line, blank lines skipped) such as test.txt."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected file not found: {path}. {missing_hint}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def parse_voc_xml(path: str) -> Tuple[int, int, List[Tuple[str, List[float], bool]]]:
    """Read a VOC annotation file.

    Returns:
        tuple: height and width (pixels), and per object (class name, [x, y, w, h] in pixels
            after Detectron2's conversion: xmin and ymin minus 1, xmax and ymax kept, difficult).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected file not found: {path}. {_VOC_HINT}")
    try:
        root = ET.parse(path).getroot()
        size = (int(root.findtext("size/height")), int(root.findtext("size/width")))
        objects = []
        for obj in root.findall("object"):
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in _BOX_KEYS)
            box = [x0 - 1.0, y0 - 1.0, x1 - x0 + 1.0, y1 - y0 + 1.0]
            objects.append(
                (obj.findtext("name"), box, obj.findtext("difficult", "0").strip() == "1")
            )
    except (ET.ParseError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a readable VOC annotation file ({e}).") from e
    return size[0], size[1], objects


def voc_image_id(stem: str) -> int:
    """The output image id of VOC 2007 image ``stem`` (e.g. "000001" -> 2007000001)."""
    if not stem.isdigit() or len(stem) > 6:
        raise ValueError(f"VOC 2007 image id {stem!r} is not a number of at most 6 digits.")
    return VOC_IMAGE_ID_BASE + int(stem)


def load_voc_test(root: str) -> Tuple[List[dict], List[dict]]:
    """Read the VOC 2007 test images and boxes under the datasets ``root``.

    Returns:
        tuple[list[dict], list[dict]]: COCO ``images`` (test.txt order) and ``annotations``
            (without ``id``; category ids 1..20, difficult objects iscrowd=1).
    """
    voc = os.path.join(root, "VOC2007")
    if not os.path.isdir(voc):
        raise FileNotFoundError(f"Expected folder not found: {voc}. {_VOC_HINT}")
    images, annotations = [], []
    for stem in read_id_list(os.path.join(voc, "ImageSets", "Main", "test.txt"), _VOC_HINT):
        xml_path = os.path.join(voc, "Annotations", f"{stem}.xml")
        height, width, objects = parse_voc_xml(xml_path)
        image_id = voc_image_id(stem)
        images.append(_image(image_id, f"VOC2007/JPEGImages/{stem}.jpg", height, width))
        for name, box, difficult in objects:
            if name not in VOC_CLASSES:
                raise ValueError(f"{xml_path}: object class {name!r} is not a VOC class.")
            annotations.append(
                _annotation(image_id, category_of(name), box, box[2] * box[3], difficult)
            )
    return images, annotations


def _image(image_id: int, file_name: str, height: int, width: int) -> dict:
    """A COCO ``images`` entry (size in pixels)."""
    return dict(id=image_id, file_name=file_name, height=height, width=width)


def _annotation(image_id: int, category_id: int, box: List[float], area: float, crowd: bool):
    """A COCO annotation without ``id`` (box [x, y, w, h] and area in pixels)."""
    return dict(image_id=image_id, category_id=category_id, bbox=box, area=area, iscrowd=int(crowd))


def load_coco(path: str) -> dict:
    """Read a COCO instances file; ValueError naming ``path`` unless it has the 80 classes."""
    coco = load_json(path, _COCO_HINT)
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ValueError(f"{path} is not a COCO instances file (images/annotations/categories).")
    present = {category.get("name") for category in coco["categories"]}
    missing = sorted((set(COCO_TO_VOC) | set(NON_VOC_CLASSES)) - present)
    if missing:
        raise ValueError(
            f"{path} lacks the COCO categories {missing}; pass COCO's instances_train2017.json "
            "(80 categories) as --coco-annotations."
        )
    return coco


def object_classes(coco: dict) -> Dict[int, List[str]]:
    """Class names (VOC names for VOC classes) of each annotated image's objects, crowds included.

    Returns:
        dict[int, list[str]]: image id -> one name per annotation, in file order; ids sorted.
    """
    names = {c["id"]: COCO_TO_VOC.get(c["name"], c["name"]) for c in coco["categories"]}
    per_image = defaultdict(list)
    for annotation in coco["annotations"]:
        per_image[annotation["image_id"]].append(names[annotation["category_id"]])
    return dict(sorted(per_image.items()))


def qualifying_images(objects: Dict[int, List[str]], setting: Setting) -> List[int]:
    """Ids (sorted) of the images with a ``wanted`` object and no ``excluded`` one."""
    return [
        image_id
        for image_id, names in objects.items()
        if not setting.wanted.isdisjoint(names) and setting.excluded.isdisjoint(names)
    ]


def draw_images(objects: Dict[int, List[str]], setting: Setting, rng: random.Random) -> List[int]:
    """Draw a setting's COCO images the way opendet2 does, from a seeded generator.

    Returns:
        list[int]: the drawn image ids, sorted.
    """
    pool = qualifying_images(objects, setting)
    if setting.objects is not None:
        pool = _per_class_stage(objects, pool, setting.objects, rng)
    return sorted(rng.sample(pool, min(setting.images, len(pool))))


def _per_class_stage(
    objects: Dict[int, List[str]], pool: List[int], budget: int, rng: random.Random
) -> List[int]:
    """opendet2's first stage: each class keeps int(budget / all objects * its objects) entries
    of its object list (one image id per object); returns the union of the kept ids, sorted.
    Classes draw in name order (opendet2: order of first appearance; it only affects the draw)."""
    per_class = defaultdict(list)
    for image_id in pool:
        for name in objects[image_id]:
            per_class[name].append(image_id)
    ratio = budget / max(1, sum(len(ids) for ids in per_class.values()))
    kept = set()
    for name in sorted(per_class):
        ids = per_class[name]
        kept.update(rng.sample(ids, min(len(ids), int(ratio * len(ids)))))
    return sorted(kept)


def listed_images(list_file: str, coco: dict, voc_images: List[dict]) -> List[int]:
    """COCO image ids (sorted) named in an opendet2 image list; its VOC 2007 images are skipped."""
    by_stem = {_stem(image["file_name"]): image["id"] for image in coco["images"]}
    voc = {_stem(image["file_name"]) for image in voc_images}
    stems = [stem for stem in read_id_list(list_file, _LISTS_HINT) if stem not in voc]
    unknown = [stem for stem in stems if stem not in by_stem]
    if unknown:
        raise ValueError(
            f"{len(unknown)} ids of {list_file} are neither VOC 2007 test images nor images of the "
            f"COCO file (first: {unknown[:3]}); opendet2's lists need instances_train2017.json."
        )
    return sorted(by_stem[stem] for stem in stems)


def _stem(file_name: str) -> str:
    """A file's name without folder and extension ("VOC2007/JPEGImages/000001.jpg" -> "000001")."""
    return os.path.splitext(os.path.basename(file_name))[0]


def category_of(name: str) -> int:
    """Output category id of a class name (COCO or VOC spelling): 1..20 for a VOC class, else 21."""
    voc_name = COCO_TO_VOC.get(name, name)
    return VOC_CLASSES.index(voc_name) + 1 if voc_name in VOC_CLASSES else UNKNOWN_ID


def coco_part(coco: dict, image_ids: Sequence[int], image_dir: str, ignore_crowd: bool):
    """The chosen COCO images and their objects.

    Args:
        image_dir (str): the images' folder, relative to the datasets root.
        ignore_crowd (bool): give crowd regions iscrowd=1 (else 0, as opendet2 does).

    Returns:
        tuple[list[dict], list[dict]]: COCO ``images`` and ``annotations`` (without ``id``;
            boxes and areas in pixels, as in COCO), both in image-id order.
    """
    chosen = set(image_ids)
    category = {c["id"]: category_of(c["name"]) for c in coco["categories"]}
    images = [
        _image(i["id"], f"{image_dir}/{i['file_name']}", i["height"], i["width"])
        for i in sorted(coco["images"], key=lambda i: i["id"])
        if i["id"] in chosen
    ]
    annotations = [
        _annotation(
            a["image_id"],
            category[a["category_id"]],
            [float(v) for v in a["bbox"]],
            float(a["area"]),
            ignore_crowd and bool(a.get("iscrowd", 0)),
        )
        for a in sorted(coco["annotations"], key=lambda a: (a["image_id"], a["id"]))
        if a["image_id"] in chosen
    ]
    return images, annotations


def assemble(
    setting: Setting, voc: Tuple[List[dict], List[dict]], coco: Tuple[List[dict], List[dict]]
) -> dict:
    """Join the VOC and COCO parts into one open-set file; annotation ids are 1..N in order."""
    images = voc[0] + coco[0]
    ids = [image["id"] for image in images]
    if len(set(ids)) != len(ids):
        raise ValueError("A COCO image id equals a VOC image id; image ids must be unique.")
    annotations = [dict(a, id=i) for i, a in enumerate(voc[1] + coco[1], start=1)]
    categories = [{"id": i, "name": n} for i, n in enumerate(VOC_CLASSES + [UNKNOWN_CLASS], 1)]
    info = {"description": f"{setting.title} open-set test set ({setting.name}), as in OpenDet"}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def count(split: dict, voc_images: int) -> Dict[str, int]:
    """Image and box counts of an open-set file ("ignored_boxes": iscrowd=1, among the others)."""
    unknown = sum(a["category_id"] == UNKNOWN_ID for a in split["annotations"])
    return {
        "voc_images": voc_images,
        "coco_images": len(split["images"]) - voc_images,
        "known_boxes": len(split["annotations"]) - unknown,
        "unknown_boxes": unknown,
        "ignored_boxes": sum(a["iscrowd"] for a in split["annotations"]),
    }


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line; paths default to the layout under $DETECTRON2_DATASETS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--root", default=default_datasets_root(), help="datasets root, holding VOC2007/ and coco/")
    add("--coco-annotations", help="[<root>/coco/annotations/instances_train2017.json]")
    add("--coco-images", default="coco/train2017", help="their folder under the root [%(default)s]")
    add("--output-dir", help=f"folder of the <set>.json files [<root>/{VOC_COCO_DIR}]")
    sets = list(SETTINGS)
    sets_help = f"sets to build, of {', '.join(sets)} [all]"
    add("--sets", nargs="+", choices=sets, default=sets, metavar="SET", help=sets_help)
    add("--seed", type=int, default=0, help="seed of the image draw [%(default)s]")
    add("--opendet2-lists", help="folder of opendet2's <set>.txt lists: take their COCO images")
    add("--ignore-crowd", action="store_true", help="give COCO crowd regions iscrowd=1")
    return parser.parse_args(argv)


def describe(setting: Setting, counts: Dict[str, int], output: str) -> str:
    """One line with a written set's image and box counts."""
    voc, coco = counts["voc_images"], counts["coco_images"]
    return (
        f"{setting.name} ({setting.title}): {voc + coco} images ({voc} VOC, {coco} COCO), "
        f"{counts['known_boxes']} known and {counts['unknown_boxes']} unknown boxes "
        f"({counts['ignored_boxes']} of them difficult/crowd, ignored). Wrote {output}"
    )


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, int]]:
    """Write the requested open-set files and print their image and box counts.

    Returns:
        dict[str, dict[str, int]]: per set name, the counts of :func:`count`.
    """
    args = parse_args(argv)
    output_dir = args.output_dir or os.path.join(args.root, VOC_COCO_DIR)
    voc = load_voc_test(args.root)
    coco = load_coco(args.coco_annotations or os.path.join(args.root, _COCO_FILE))
    objects = object_classes(coco)
    results = {}
    for name in args.sets:
        if args.opendet2_lists:
            ids = listed_images(os.path.join(args.opendet2_lists, f"{name}.txt"), coco, voc[0])
        else:
            ids = draw_images(objects, SETTINGS[name], random.Random(args.seed))
        chosen = coco_part(coco, ids, args.coco_images, args.ignore_crowd)
        split, output = assemble(SETTINGS[name], voc, chosen), os.path.join(
            output_dir, f"{name}.json"
        )
        write_json(split, output, compact=True)
        results[name] = count(split, len(voc[0]))
        print(describe(SETTINGS[name], results[name], output))
    return results


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
