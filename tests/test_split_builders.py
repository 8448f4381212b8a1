"""The dataset preparation scripts in datasets/: counts, outputs, and loading what they write."""

import importlib.util
import json
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from vos_det.data import ID_CLASSES, register_all_vos_datasets, register_ood_dataset

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "datasets"


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


coco_ood = _load_script("prepare_coco_ood")
openimages_ood = _load_script("prepare_openimages_ood")
bdd = _load_script("prepare_bdd100k")


@pytest.fixture
def catalogs(monkeypatch):
    """Give each test its own copy of the dataset and metadata catalogs."""
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    monkeypatch.setattr(MetadataCatalog, "data", dict(MetadataCatalog.data))


def _register_root(root, *names):
    """Register the VOS datasets under ``root`` in place of the import-time ones."""
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_all_vos_datasets(str(root))


def _write_image(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height)).save(path)


@pytest.mark.parametrize("mapping", [coco_ood.ID_TO_COCO, openimages_ood.ID_TO_OPENIMAGES])
def test_mapping_tables_cover_every_id_class(mapping):
    assert {benchmark: sorted(table) for benchmark, table in mapping.items()} == {
        benchmark: sorted(classes) for benchmark, classes in ID_CLASSES.items()
    }


# ---------------------------------------------------------------- COCO-OOD


def _coco_fixture():
    names = sorted({n for table in coco_ood.ID_TO_COCO.values() for v in table.values() for n in v})
    names += ["elephant", "giraffe"]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    ids = {c["name"]: c["id"] for c in categories}
    objects = {  # image id -> (category name, iscrowd)
        1: [("person", 0), ("elephant", 0)],
        2: [("elephant", 0)],
        3: [],
        4: [("dining table", 0), ("giraffe", 0)],
        5: [("stop sign", 0)],
        6: [("truck", 0), ("elephant", 0)],
        7: [("person", 1), ("giraffe", 0)],
    }
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 8, "width": 9} for i in objects]
    annotations = [
        {"id": 10 * i + k, "image_id": i, "category_id": ids[name], "iscrowd": crowd}
        for i, objs in objects.items()
        for k, (name, crowd) in enumerate(objs)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize(
    "benchmark, kept, dropped_id_object", [("voc", [2, 5, 6], 3), ("bdd", [2, 4], 4)]
)
def test_coco_ood_split(tmp_path, capsys, benchmark, kept, dropped_id_object):
    source = tmp_path / "instances_val2017.json"
    source.write_text(json.dumps(_coco_fixture()))
    output = tmp_path / "out" / "ood.json"

    counts = coco_ood.main(
        ["--benchmark", benchmark, "--annotations", str(source), "--output", str(output)]
    )

    assert counts == {
        "total": 7,
        "kept": len(kept),
        "dropped_id_object": dropped_id_object,
        "dropped_unannotated": 1,
    }
    assert f"kept {len(kept)}, dropped {dropped_id_object}" in capsys.readouterr().out
    split = json.loads(output.read_text())
    assert [image["id"] for image in split["images"]] == kept
    assert sorted({a["image_id"] for a in split["annotations"]}) == kept
    assert split["categories"] == _coco_fixture()["categories"]


def test_coco_ood_default_paths_feed_the_registered_dataset(tmp_path, catalogs):
    annotations = tmp_path / "coco" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "instances_val2017.json").write_text(json.dumps(_coco_fixture()))
    (tmp_path / "coco" / "val2017").mkdir()

    coco_ood.main(["--coco-root", str(tmp_path / "coco")])
    _register_root(tmp_path, "coco_ood_val")

    dicts = DatasetCatalog.get("coco_ood_val")
    assert [d["image_id"] for d in dicts] == [2, 5, 6]
    assert dicts[0]["file_name"] == str(tmp_path / "coco" / "val2017" / "000000000002.jpg")
    assert all(d["annotations"] == [] for d in dicts)


def test_coco_ood_rejects_annotations_without_the_mapped_categories(tmp_path):
    coco = _coco_fixture()
    coco["categories"] = [c for c in coco["categories"] if c["name"] != "tv"]
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"\['tv'\] are not in the annotation file"):
        coco_ood.main(["--annotations", str(source), "--output", str(tmp_path / "o.json")])


def test_coco_ood_missing_annotations_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        coco_ood.main(["--coco-root", str(tmp_path)])


# ---------------------------------------------------------------- OpenImages-OOD

DESCRIPTIONS = [
    ("/m/01g317", "Person"),
    ("/m/04yx4", "Man"),
    ("/m/0bwd_0j", "Elephant"),
    ("/m/07r04", "Truck"),
    ("/m/0k4j", "car"),  # lower case on purpose: names are matched case-insensitively
]
BOXES = [  # (ImageID, LabelName)
    ("aaa", "/m/01g317"),
    ("bbb", "/m/0bwd_0j"),
    ("ccc", "/m/04yx4"),
    ("ccc", "/m/0bwd_0j"),
    ("ddd", "/m/0bwd_0j"),
    ("eee", "/m/07r04"),
    ("fff", "/m/0k4j"),
]


def _write_openimages_csvs(root, header):
    rows = [",".join(row) for row in DESCRIPTIONS]
    (root / "classes.csv").write_text("\n".join(["LabelName,DisplayName"] * header + rows) + "\n")
    box_rows = [f"{image_id},xclick,{label},1,0.1,0.5,0.2,0.6" for image_id, label in BOXES]
    header_row = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax"
    (root / "boxes.csv").write_text("\n".join([header_row] + box_rows) + "\n")


@pytest.mark.parametrize(
    "benchmark, header, kept, dropped_id_object",
    [("voc", True, ["bbb", "eee"], 3), ("bdd", False, ["bbb"], 4)],
)
def test_openimages_ood_from_csvs(tmp_path, capsys, benchmark, header, kept, dropped_id_object):
    _write_openimages_csvs(tmp_path, header)
    for image_id, height, width in [("aaa", 5, 5), ("bbb", 6, 7), ("eee", 8, 3), ("fff", 4, 4)]:
        _write_image(tmp_path / "images" / f"{image_id}.jpg", height, width)
    # "ddd" has only an elephant box but its image file is absent: reported missing, dropped.

    counts = openimages_ood.main(
        [
            "--benchmark",
            benchmark,
            "--openimages-root",
            str(tmp_path),
            "--boxes",
            str(tmp_path / "boxes.csv"),
            "--class-descriptions",
            str(tmp_path / "classes.csv"),
        ]
    )

    assert counts == {
        "total": 6,
        "dropped_id_object": dropped_id_object,
        "kept": len(kept),
        "missing": 1,
    }
    assert "First missing images: ddd.jpg" in capsys.readouterr().out
    split = json.loads((tmp_path / f"openimages_ood_wrt_{benchmark}.json").read_text())
    sizes = {"bbb": (6, 7), "eee": (8, 3)}
    assert split["images"] == [
        {"id": i + 1, "file_name": f"{k}.jpg", "height": sizes[k][0], "width": sizes[k][1]}
        for i, k in enumerate(kept)
    ]


def test_openimages_ood_from_a_folder_feeds_the_registered_dataset(tmp_path, catalogs):
    root = tmp_path / "OpenImages"
    _write_image(root / "images" / "b.png", 6, 7)
    _write_image(root / "images" / "sub" / "a.jpg", 3, 4)
    (root / "images" / "readme.txt").write_text("ignored")

    counts = openimages_ood.main(["--openimages-root", str(root)])
    _register_root(tmp_path, "openimages_ood_val")

    assert counts == {"total": 2, "dropped_id_object": 0, "kept": 2, "missing": 0}
    dicts = DatasetCatalog.get("openimages_ood_val")
    assert [(d["file_name"], d["height"], d["width"]) for d in dicts] == [
        (str(root / "images" / "b.png"), 6, 7),
        (str(root / "images" / "sub" / "a.jpg"), 3, 4),
    ]
    assert MetadataCatalog.get("openimages_ood_val").thing_classes == ID_CLASSES["voc"]


def test_openimages_ood_needs_both_csvs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        openimages_ood.main(["--boxes", str(tmp_path / "boxes.csv")])
    assert "--boxes and --class-descriptions go together" in capsys.readouterr().err


def test_openimages_ood_rejects_a_csv_without_the_columns(tmp_path):
    _write_openimages_csvs(tmp_path, header=True)
    (tmp_path / "boxes.csv").write_text("image,label\naaa,/m/01g317\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['ImageID', 'LabelName'\]"):
        openimages_ood.main(
            [
                "--openimages-root",
                str(tmp_path),
                "--boxes",
                str(tmp_path / "boxes.csv"),
                "--class-descriptions",
                str(tmp_path / "classes.csv"),
            ]
        )


def test_openimages_output_registers_as_a_user_ood_set(tmp_path, catalogs):
    _write_image(tmp_path / "images" / "z.jpg", 5, 9)
    output = tmp_path / "mine.json"
    openimages_ood.main(["--image-dir", str(tmp_path / "images"), "--output", str(output)])
    register_ood_dataset("test_user_ood", str(tmp_path / "images"), str(output), id_classes="bdd")
    (record,) = DatasetCatalog.get("test_user_ood")
    assert (record["image_id"], record["height"], record["width"]) == (1, 5, 9)


# ---------------------------------------------------------------- BDD100K

FRAMES = [
    {
        "name": "a.jpg",
        "labels": [
            {"category": "car", "box2d": {"x1": 1.0, "y1": 2.0, "x2": 11.0, "y2": 7.0}},
            {"category": "person", "box2d": {"x1": 0, "y1": 0, "x2": 4, "y2": 8}},
            {"category": "bike", "box2d": {"x1": 0, "y1": 0, "x2": 2, "y2": 2}},
            {"category": "motor", "box2d": {"x1": 0, "y1": 0, "x2": 3, "y2": 3}},
            {"category": "traffic sign", "box2d": {"x1": 5, "y1": 5, "x2": 5, "y2": 9}},
            {"category": "drivable area", "poly2d": [[0, 0], [1, 1]]},
            {"category": "lane", "poly2d": [[0, 0], [1, 1]]},
            {"category": "other vehicle", "box2d": {"x1": 0, "y1": 0, "x2": 3, "y2": 3}},
        ],
    },
    {"name": "b.jpg"},
    {"name": "c.jpg", "labels": None},
]


def test_bdd_conversion(tmp_path, capsys):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(FRAMES))
    output = tmp_path / "coco.json"

    counts = bdd.main(["--labels", str(labels), "--output", str(output)])

    assert counts == {"images": 3, "boxes": 4, "ignored_labels": 3, "degenerate_boxes": 1}
    assert "'drivable area': 1" in capsys.readouterr().out
    coco = json.loads(output.read_text())
    assert [c["name"] for c in coco["categories"]] == ID_CLASSES["bdd"]
    assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        (1, "a.jpg", 720, 1280),
        (2, "b.jpg", 720, 1280),
        (3, "c.jpg", 720, 1280),
    ]
    names = [ID_CLASSES["bdd"][a["category_id"] - 1] for a in coco["annotations"]]
    assert names == ["car", "pedestrian", "bicycle", "motorcycle"]
    assert coco["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 5.0]
    assert coco["annotations"][0]["area"] == 50.0


def test_bdd_read_sizes_and_registered_dataset(tmp_path, catalogs):
    root = tmp_path / "bdd100k"
    for frame, (height, width) in zip(FRAMES, [(30, 40), (20, 10), (5, 5)]):
        _write_image(root / "images" / "100k" / "val" / frame["name"], height, width)
    (root / "labels").mkdir()
    (root / "labels" / "bdd100k_labels_images_val.json").write_text(json.dumps(FRAMES))

    bdd.main(["--split", "val", "--bdd-root", str(root), "--read-sizes"])
    _register_root(tmp_path, "bdd_val")

    dicts = DatasetCatalog.get("bdd_val")
    assert [(d["height"], d["width"]) for d in dicts] == [(30, 40), (20, 10), (5, 5)]
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [
        ID_CLASSES["bdd"].index(name) for name in ("car", "pedestrian", "bicycle", "motorcycle")
    ]
    assert dicts[1]["annotations"] == []
    assert MetadataCatalog.get("bdd_val").thing_classes == ID_CLASSES["bdd"]


def test_bdd_rejects_a_file_that_is_not_a_label_list(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"frames": []}))
    with pytest.raises(ValueError, match="is not a BDD100K detection label file"):
        bdd.main(["--labels", str(labels), "--output", str(tmp_path / "o.json")])
