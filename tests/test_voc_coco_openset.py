"""datasets/prepare_voc_coco_openset.py (OpenDet's VOC-COCO open-set test sets) and their
registration: selection rule, VOC box conversion, unknown mapping, counts, errors."""

import json
import os
import random
import subprocess
import sys

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import test_split_builders as split_builders
from vos_det.data import ID_CLASSES
from vos_det.data.builtin import VOC_COCO_OPEN_SETS
from vos_det.data.ood_datasets import default_datasets_root

openset = split_builders._load_script("prepare_voc_coco_openset")
catalogs = split_builders.catalogs  # fixture: each test gets its own catalog copies
_register_root = split_builders._register_root

VOC = ID_CLASSES["voc"]
CLASS_SETS = ("voc_coco_20_40_test", "voc_coco_20_60_test", "voc_coco_20_80_test")
# VOC 2007 test fixture: id -> (width, height, [(name, xmin, ymin, xmax, ymax, difficult)]).
VOC_IMAGES = {
    "000001": (353, 500, [("dog", 48, 240, 195, 371, 0), ("person", 8, 12, 352, 498, 1)]),
    "000002": (335, 500, [("train", 139, 200, 207, 301, 0)]),
}
# COCO fixture: image id -> [(COCO category name, iscrowd)].
COCO_OBJECTS = {
    1: [("truck", 0)],  # first non-VOC group only
    2: [("truck", 0), ("person", 0)],  # person: in no set
    3: [("frisbee", 0), ("dog", 0)],  # second group + a VOC object
    4: [("bed", 0)],  # third group
    5: [("airplane", 0)],  # VOC only: in no set
    6: [],  # no annotation: in no set
    7: [("elephant", 1), ("couch", 0)],  # first group (a crowd) + VOC sofa
    8: [("giraffe", 0), ("giraffe", 0), ("bed", 0)],  # first and third groups
    9: [("kite", 0), ("tv", 0)],  # second group + VOC tvmonitor
}
# Set -> (chosen COCO image ids, known boxes, unknown boxes); VOC part: 3 known boxes.
EXPECTED = {
    "voc_coco_20_40_test": ([1, 7], 4, 2),
    "voc_coco_20_60_test": ([1, 3, 7, 9], 6, 4),
    "voc_coco_20_80_test": ([1, 3, 4, 7, 8, 9], 6, 8),
    "voc_coco_2500_test": ([1, 4, 8], 3, 5),
}


def _write_voc(root):
    main = root / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "test.txt").write_text("\n".join(VOC_IMAGES) + "\n\n")
    (root / "VOC2007" / "Annotations").mkdir()
    for stem, (width, height, objects) in VOC_IMAGES.items():
        xml = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for n, x0, y0, x1, y1, d in objects
        )
        size = f"<size><width>{width}</width><height>{height}</height></size>"
        path = root / "VOC2007" / "Annotations" / f"{stem}.xml"
        path.write_text(f"<annotation>{size}{xml}</annotation>")


def _coco():
    names = sorted(set(openset.COCO_TO_VOC) | set(openset.NON_VOC_CLASSES))
    categories = [{"id": 100 + i, "name": name} for i, name in enumerate(names)]
    ids = {c["name"]: c["id"] for c in categories}
    images = [
        {"id": i, "file_name": f"{i:012d}.jpg", "height": 10, "width": 20} for i in COCO_OBJECTS
    ]
    annotations = [
        {"id": 10 * i + k, "image_id": i, "category_id": ids[name], "iscrowd": crowd,
         "bbox": [1.5, 2, 3, 4], "area": 9.5}
        for i, objects in COCO_OBJECTS.items()
        for k, (name, crowd) in enumerate(objects)
    ]  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_coco(root, coco=None):
    path = root / "coco" / "annotations" / "instances_train2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco or _coco()))
    return path


@pytest.fixture
def root(tmp_path):
    """A datasets root holding the VOC 2007 test and COCO fixtures."""
    _write_voc(tmp_path)
    _write_coco(tmp_path)
    return tmp_path


def _build(root, *extra):
    return openset.main(["--root", str(root), *extra])


def _read(root, name):
    return json.loads((root / "voc_coco" / f"{name}.json").read_text())


def test_settings_follow_opendet2_class_groups():
    assert tuple(openset.SETTINGS) == VOC_COCO_OPEN_SETS
    groups = [set(group) for group in openset.NON_VOC_GROUPS]
    assert [len(g) for g in groups] == [20, 20, 20] and len(set.union(*groups)) == 60
    assert set.union(*groups) | set(openset.COCO_TO_VOC) == set(_coco_names())
    for n, name in enumerate(CLASS_SETS, start=1):
        setting = openset.SETTINGS[name]
        assert setting.wanted == set().union(*groups[:n])
        assert setting.excluded == set().union(*groups[n:], {"person"})
        assert (setting.title, setting.objects, setting.images) == (
            f"VOC-COCO-{20 * n}",
            8000 * n,
            5000 * n,
        )
    assert openset.SETTINGS["voc_coco_10000_test"].excluded == set(VOC)


def _coco_names():
    return [c["name"] for c in _coco()["categories"]]


def test_counts_selection_and_unknown_mapping_per_set(root, capsys):
    counts = _build(root)

    out = capsys.readouterr().out
    for name, (coco_ids, known, unknown) in EXPECTED.items():
        assert counts[name] == {
            "voc_images": 2,
            "coco_images": len(coco_ids),
            "known_boxes": known,
            "unknown_boxes": unknown,
            "ignored_boxes": 1,  # the difficult VOC person; COCO crowds are kept by default
        }
        assert f"{name} " in out and f"{known} known and {unknown} unknown boxes" in out
        split = _read(root, name)
        assert [i["id"] for i in split["images"]] == [2007000001, 2007000002] + coco_ids
        assert len({i["id"] for i in split["images"]}) == len(split["images"])
        assert [a["id"] for a in split["annotations"]] == list(range(1, known + unknown + 1))
        assert split["categories"] == [
            {"id": i, "name": n} for i, n in enumerate(VOC + ["unknown"], start=1)
        ]
    assert counts["voc_coco_20000_test"] == counts["voc_coco_2500_test"]
    unknown_names = {
        COCO_OBJECTS[a["image_id"]][0][0]
        for a in _read(root, "voc_coco_20_40_test")["annotations"]
        if a["category_id"] == 21
    }
    assert unknown_names == {"truck", "elephant"}  # only the first group's classes


def test_voc_boxes_difficult_and_coco_entries(root):
    _build(root, "--sets", "voc_coco_20_40_test")
    split = _read(root, "voc_coco_20_40_test")

    assert split["images"][0] == {
        "id": 2007000001, "file_name": "VOC2007/JPEGImages/000001.jpg", "height": 500, "width": 353
    }  # fmt: skip
    assert split["images"][2]["file_name"] == "coco/train2017/000000000001.jpg"
    dog, person, train = split["annotations"][:3]
    assert dog == {
        "id": 1, "image_id": 2007000001, "category_id": VOC.index("dog") + 1,
        "bbox": [47.0, 239.0, 148.0, 132.0], "area": 148.0 * 132.0, "iscrowd": 0,
    }  # fmt: skip
    assert (person["category_id"], person["iscrowd"]) == (VOC.index("person") + 1, 1)
    assert train["bbox"] == [138.0, 199.0, 69.0, 102.0]
    coco = split["annotations"][3:]
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in coco] == [
        (1, 21, 0),
        (7, 21, 0),  # the elephant crowd: an ordinary unknown object, as in opendet2
        (7, VOC.index("sofa") + 1, 0),
    ]
    assert coco[0]["bbox"] == [1.5, 2.0, 3.0, 4.0] and coco[0]["area"] == 9.5


def test_ignore_crowd_marks_coco_crowds(root):
    counts = _build(root, "--sets", "voc_coco_20_40_test", "--ignore-crowd")
    assert counts["voc_coco_20_40_test"]["ignored_boxes"] == 2


def test_output_is_deterministic(root, tmp_path_factory):
    other = tmp_path_factory.mktemp("again")
    _build(root, "--seed", "3")
    _build(root, "--seed", "3", "--output-dir", str(other))
    for name in VOC_COCO_OPEN_SETS:
        assert (root / "voc_coco" / f"{name}.json").read_bytes() == (
            other / f"{name}.json"
        ).read_bytes()


def test_draw_is_seeded_and_capped():
    objects = {i: ["truck"] for i in range(1, 41)}
    setting = openset.Setting("s", "S", frozenset({"truck"}), frozenset(), None, 5)
    draw = [openset.draw_images(objects, setting, random.Random(seed)) for seed in (0, 0, 1)]
    assert draw[0] == draw[1] == sorted(draw[0]) and len(draw[0]) == 5 and draw[2] != draw[0]
    capped = openset.Setting("s", "S", frozenset({"truck"}), frozenset(), None, 100)
    assert openset.draw_images(objects, capped, random.Random(0)) == list(range(1, 41))


def test_per_class_stage_keeps_each_class_in_proportion():
    # 6 images with a truck, 2 with a bed: 8 objects, a budget of 4 keeps 3 trucks and 1 bed.
    objects = {i: ["truck"] for i in range(1, 7)} | {i: ["bed"] for i in (7, 8)}
    setting = openset.Setting("s", "S", frozenset({"truck", "bed"}), frozenset(), 4, 100)
    drawn = openset.draw_images(objects, setting, random.Random(0))
    assert len([i for i in drawn if i <= 6]) == 3 and len([i for i in drawn if i > 6]) == 1


def test_opendet2_lists_give_the_coco_images(root):
    lists = root / "lists"
    lists.mkdir()
    (lists / "voc_coco_20_40_test.txt").write_text("000001\n000002\n000000000007\n000000000004\n")
    counts = _build(root, "--sets", "voc_coco_20_40_test", "--opendet2-lists", str(lists))
    assert counts["voc_coco_20_40_test"]["coco_images"] == 2
    assert [i["id"] for i in _read(root, "voc_coco_20_40_test")["images"][2:]] == [4, 7]

    (lists / "voc_coco_20_40_test.txt").write_text("000001\n000000000077\n")
    with pytest.raises(ValueError, match=r"1 ids of .* \(first: \['000000000077'\]\)"):
        _build(root, "--sets", "voc_coco_20_40_test", "--opendet2-lists", str(lists))


def test_written_set_loads_through_the_registered_dataset(root, catalogs):
    _build(root, "--sets", "voc_coco_20_60_test")
    _register_root(root, "voc_coco_20_60_test")

    dicts = DatasetCatalog.get("voc_coco_20_60_test")
    assert dicts[0]["file_name"] == f"{root}/VOC2007/JPEGImages/000001.jpg"
    assert dicts[2]["file_name"] == f"{root}/coco/train2017/000000000001.jpg"
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [
        VOC.index("dog"),
        VOC.index("person"),
    ]
    by_id = {d["image_id"]: d for d in dicts}
    assert [a["category_id"] for a in by_id[3]["annotations"]] == [20, VOC.index("dog")]
    assert [a["category_id"] for a in by_id[9]["annotations"]] == [20, VOC.index("tvmonitor")]


@pytest.mark.parametrize("name", VOC_COCO_OPEN_SETS)
def test_open_sets_registered_at_import(name):
    metadata = MetadataCatalog.get(name)
    assert metadata.evaluator_type == "open_set"
    assert metadata.thing_classes == VOC + ["unknown"]
    assert metadata.image_root == default_datasets_root()
    assert metadata.json_file == os.path.join(default_datasets_root(), "voc_coco", f"{name}.json")


def test_missing_set_names_the_file_and_the_command(tmp_path, catalogs):
    _register_root(tmp_path, "voc_coco_20_40_test")
    with pytest.raises(FileNotFoundError, match=r"voc_coco_20_40_test\.json.*prepare_voc_coco"):
        DatasetCatalog.get("voc_coco_20_40_test")


def test_missing_voc_folder_and_files(tmp_path):
    _write_coco(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"VOC2007\. Extract VOCtest_06-Nov-2007\.tar"):
        _build(tmp_path)
    _write_voc(tmp_path)
    (tmp_path / "VOC2007" / "Annotations" / "000002.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"Annotations/000002\.xml"):
        _build(tmp_path)
    (tmp_path / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Main/test\.txt"):
        _build(tmp_path)


def test_bad_voc_annotations(root):
    xml = root / "VOC2007" / "Annotations" / "000002.xml"
    xml.write_text(xml.read_text().replace("train", "giraffe"))
    with pytest.raises(ValueError, match=r"000002\.xml: object class 'giraffe' is not a VOC"):
        _build(root)
    xml.write_text("<annotation><size><width>3</width></size></annotation>")
    with pytest.raises(ValueError, match=r"000002\.xml is not a readable VOC annotation file"):
        _build(root)


def test_coco_errors_name_the_file(root):
    coco = _coco()
    coco["categories"] = [c for c in coco["categories"] if c["name"] not in ("tv", "bed")]
    path = _write_coco(root, coco)
    with pytest.raises(ValueError, match=r"lacks the COCO categories \['bed', 'tv'\]"):
        _build(root)
    path.write_text(json.dumps([]))
    with pytest.raises(ValueError, match="is not a COCO instances file"):
        _build(root)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        _build(root)


def test_colliding_image_ids_are_refused(root):
    coco = _coco()
    coco["images"][0]["id"] = 2007000001
    for annotation in coco["annotations"]:
        annotation["image_id"] = (
            2007000001 if annotation["image_id"] == 1 else annotation["image_id"]
        )
    _write_coco(root, coco)
    with pytest.raises(ValueError, match="image ids must be unique"):
        _build(root, "--sets", "voc_coco_20_40_test")


def test_help_and_command_line(root, capsys):
    with pytest.raises(SystemExit):
        openset.main(["--help"])
    assert "--opendet2-lists" in capsys.readouterr().out

    script = str(split_builders.SCRIPTS_DIR / "prepare_voc_coco_openset.py")
    ok = subprocess.run(
        [sys.executable, script, "--root", str(root), "--sets", "voc_coco_20_80_test"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "voc_coco_20_80_test (VOC-COCO-60): 8 images (2 VOC, 6 COCO)" in ok.stdout

    (root / "coco" / "annotations" / "instances_train2017.json").unlink()
    failed = subprocess.run(
        [sys.executable, script, "--root", str(root)], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: Expected file not found:")
    assert "Traceback" not in failed.stderr
