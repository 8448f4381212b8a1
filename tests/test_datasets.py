"""Registration of the VOS datasets and of users' own OOD image sets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from detectron2.data.detection_utils import read_image
from PIL import Image

from vos_det.data import ID_CLASSES, register_all_vos_datasets, register_ood_dataset
from vos_det.data.ood_datasets import (
    IMAGE_EXTENSIONS,
    default_datasets_root,
    list_image_files,
    read_image_size,
)

OOD_SETS = {  # name: (ID benchmark, json file, preparation script)
    "coco_ood_val": (
        "voc",
        "coco/annotations/instances_val2017_ood_wrt_voc.json",
        "prepare_coco_ood.py --benchmark voc",
    ),
    "coco_ood_val_bdd": (
        "bdd",
        "coco/annotations/instances_val2017_ood_wrt_bdd.json",
        "prepare_coco_ood.py --benchmark bdd",
    ),
    "openimages_ood_val": (
        "voc",
        "OpenImages/openimages_ood_wrt_voc.json",
        "prepare_openimages_ood.py --benchmark voc",
    ),
    "openimages_ood_val_bdd": (
        "bdd",
        "OpenImages/openimages_ood_wrt_bdd.json",
        "prepare_openimages_ood.py --benchmark bdd",
    ),
}
BDD_SETS = ("bdd_train", "bdd_val")


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty datasets root with the VOS datasets registered under it (catalogs restored)."""
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    monkeypatch.setattr(MetadataCatalog, "data", dict(MetadataCatalog.data))
    for name in [*OOD_SETS, *BDD_SETS]:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_all_vos_datasets(str(tmp_path))
    return tmp_path


def _write_image(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 30, 200)).save(path)


def test_voc_classes_are_detectron2s_in_its_order():
    assert ID_CLASSES["voc"] == list(VOC_CLASS_NAMES)


@pytest.mark.parametrize("name", sorted(OOD_SETS))
def test_ood_sets_registered_at_import_with_ood_metadata(name):
    benchmark, json_file, _ = OOD_SETS[name]
    assert name in DatasetCatalog
    metadata = MetadataCatalog.get(name)
    assert metadata.evaluator_type == "ood"
    assert metadata.id_dataset == benchmark
    assert metadata.id_classes == metadata.thing_classes == ID_CLASSES[benchmark]
    assert metadata.json_file == os.path.join(default_datasets_root(), json_file)


@pytest.mark.parametrize("name", BDD_SETS)
def test_bdd_sets_registered_as_id_sets(name):
    metadata = MetadataCatalog.get(name)
    assert metadata.evaluator_type == "coco"
    assert metadata.thing_classes == ID_CLASSES["bdd"]


@pytest.mark.parametrize("name", ["voc_2007_trainval", "voc_2012_trainval", "voc_2007_test"])
def test_voc_sets_reused_from_detectron2_under_the_same_root(name):
    metadata = MetadataCatalog.get(name)
    assert metadata.id_dataset == "voc"
    assert metadata.evaluator_type == "pascal_voc"
    assert os.path.dirname(metadata.dirname) == default_datasets_root()


def test_registration_is_idempotent(root):
    register_all_vos_datasets(str(root / "elsewhere"))  # names exist: nothing re-registered
    assert MetadataCatalog.get("coco_ood_val").image_root == str(root / "coco" / "val2017")


@pytest.mark.parametrize("name", sorted(OOD_SETS))
def test_missing_json_names_path_and_command(root, name):
    _, json_file, script = OOD_SETS[name]
    with pytest.raises(FileNotFoundError) as error:
        DatasetCatalog.get(name)
    message = str(error.value)
    assert str(root / json_file) in message
    assert f"python datasets/{script}" in message


def test_missing_image_folder_names_path_and_command(root):
    json_file = root / "bdd100k" / "annotations" / "bdd100k_det_val_coco.json"
    json_file.parent.mkdir(parents=True)
    json_file.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(FileNotFoundError) as error:
        DatasetCatalog.get("bdd_val")
    assert str(root / "bdd100k" / "images" / "100k" / "val") in str(error.value)
    assert "python datasets/prepare_bdd100k.py --split val" in str(error.value)


@pytest.mark.parametrize("name", ["coco_ood_val", "bdd_train"])
def test_corrupt_json_names_the_file(root, name):
    metadata = MetadataCatalog.get(name)
    os.makedirs(metadata.image_root)
    os.makedirs(os.path.dirname(metadata.json_file), exist_ok=True)
    with open(metadata.json_file, "w") as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match="is not valid JSON") as error:
        DatasetCatalog.get(name)
    assert metadata.json_file in str(error.value)


def test_json_without_images_list_is_rejected(root):
    metadata = MetadataCatalog.get("openimages_ood_val")
    os.makedirs(metadata.image_root)
    with open(metadata.json_file, "w") as f:
        json.dump([{"file_name": "a.jpg"}], f)
    with pytest.raises(ValueError, match="has no 'images' list"):
        DatasetCatalog.get("openimages_ood_val")


def test_coco_ood_set_loads_images_and_ignores_annotations(root):
    metadata = MetadataCatalog.get("coco_ood_val")
    os.makedirs(metadata.image_root)
    os.makedirs(os.path.dirname(metadata.json_file))
    coco = {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "height": 426, "width": 640}],
        "annotations": [{"id": 1, "image_id": 139, "category_id": 22, "bbox": [0, 0, 5, 5]}],
        "categories": [{"id": 22, "name": "elephant"}],
    }
    with open(metadata.json_file, "w") as f:
        json.dump(coco, f)
    assert DatasetCatalog.get("coco_ood_val") == [
        {
            "file_name": os.path.join(metadata.image_root, "000000000139.jpg"),
            "image_id": 139,
            "height": 426,
            "width": 640,
            "annotations": [],
        }
    ]


def test_register_ood_dataset_on_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    _write_image(tmp_path / "b.png", 10, 20)
    _write_image(tmp_path / "a.JPG", 12, 7)
    _write_image(tmp_path / "sub" / "c.bmp", 5, 6)
    (tmp_path / "notes.txt").write_text("not an image")
    register_ood_dataset("test_ood_folder", str(tmp_path), id_classes="bdd")

    dicts = DatasetCatalog.get("test_ood_folder")
    assert [(d["image_id"], d["height"], d["width"]) for d in dicts] == [
        ("a.JPG", 12, 7),
        ("b.png", 10, 20),
        ("sub/c.bmp", 5, 6),
    ]
    assert dicts[0]["file_name"] == str(tmp_path / "a.JPG")
    assert all(d["annotations"] == [] for d in dicts)
    metadata = MetadataCatalog.get("test_ood_folder")
    assert metadata.evaluator_type == "ood"
    assert metadata.thing_classes == ID_CLASSES["bdd"]


def test_register_ood_dataset_on_a_json_list(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    _write_image(tmp_path / "images" / "x.jpg", 9, 4)
    json_file = tmp_path / "list.json"
    json_file.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg"}]}))
    register_ood_dataset(
        "test_ood_list", str(tmp_path / "images"), str(json_file), id_classes=["a", "b"]
    )

    (record,) = DatasetCatalog.get("test_ood_list")
    assert (record["image_id"], record["height"], record["width"]) == (7, 9, 4)
    metadata = MetadataCatalog.get("test_ood_list")
    assert metadata.id_dataset == "custom"
    assert metadata.thing_classes == ["a", "b"]
    assert metadata.json_file == str(json_file)


def test_register_ood_dataset_with_a_loader(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    monkeypatch.setattr(MetadataCatalog, "data", dict(MetadataCatalog.data))
    records = [{"file_name": "made.png", "image_id": 1, "height": 4, "width": 5, "annotations": []}]
    calls = []

    def loader():
        calls.append(1)
        return records

    json_file = str(tmp_path / "missing.json")  # never read: the loader replaces it
    register_ood_dataset("test_ood_loader", str(tmp_path), json_file, ["a"], loader=loader)
    assert not calls  # registration loads nothing
    assert DatasetCatalog.get("test_ood_loader") == records and calls == [1]
    metadata = MetadataCatalog.get("test_ood_loader")
    assert metadata.evaluator_type == "ood"
    assert metadata.id_dataset == "custom"
    assert metadata.thing_classes == metadata.id_classes == ["a"]
    assert metadata.image_root == str(tmp_path) and metadata.json_file == json_file


def test_image_entries_need_file_name_and_id(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    json_file = tmp_path / "list.json"
    json_file.write_text(json.dumps({"images": [{"file_name": "x.jpg"}]}))
    register_ood_dataset("test_ood_bad_entry", str(tmp_path), str(json_file))
    with pytest.raises(ValueError, match="needs 'file_name' and 'id'"):
        DatasetCatalog.get("test_ood_bad_entry")


def test_missing_and_empty_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    register_ood_dataset("test_ood_missing", str(tmp_path / "nowhere"))
    register_ood_dataset("test_ood_empty", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DatasetCatalog.get("test_ood_missing")
    with pytest.raises(ValueError, match="No images"):
        DatasetCatalog.get("test_ood_empty")


def test_unknown_id_benchmark_is_rejected():
    with pytest.raises(ValueError, match="Unknown ID benchmark 'coco'"):
        register_ood_dataset("test_ood_unknown", "somewhere", id_classes="coco")
    assert "test_ood_unknown" not in DatasetCatalog


def test_image_size_follows_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[274] = 6  # rotated 90 degrees: Detectron2 transposes the image when reading it
    Image.fromarray(np.zeros((8, 30, 3), dtype=np.uint8)).save(path, exif=exif)
    assert read_image_size(str(path)) == read_image(str(path)).shape[:2] == (30, 8)


def test_every_image_extension_is_listed_and_sized(tmp_path):
    assert set(IMAGE_EXTENSIONS) >= {".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    for index, extension in enumerate(IMAGE_EXTENSIONS):
        _write_image(tmp_path / f"{index}{extension.upper()}", 9 + index, 20 - index)
    assert list_image_files(str(tmp_path)) == [
        f"{index}{extension.upper()}" for index, extension in enumerate(IMAGE_EXTENSIONS)
    ]
    for index, extension in enumerate(IMAGE_EXTENSIONS):
        path = str(tmp_path / f"{index}{extension.upper()}")
        assert read_image_size(path) == read_image(path).shape[:2] == (9 + index, 20 - index)


@pytest.mark.slow
def test_import_registers_under_detectron2_datasets(tmp_path):
    """A fresh interpreter with DETECTRON2_DATASETS set loads VOC and COCO-OOD from that root."""
    voc = tmp_path / "VOC2007"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    # Two images: Detectron2's VOC loader cannot read a split file holding a single id.
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    (voc / "Annotations").mkdir()
    for file_id in ("000001", "000002"):
        _write_image(voc / "JPEGImages" / f"{file_id}.jpg", 16, 24)
        (voc / "Annotations" / f"{file_id}.xml").write_text(
            "<annotation><size><width>24</width><height>16</height></size><object>"
            "<name>dog</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin>"
            "<xmax>10</xmax><ymax>12</ymax></bndbox></object></annotation>"
        )
    _write_image(tmp_path / "coco" / "val2017" / "1.jpg", 11, 13)
    coco_json = tmp_path / "coco" / "annotations" / "instances_val2017_ood_wrt_voc.json"
    coco_json.parent.mkdir()
    coco_json.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.jpg"}]}))
    script = (
        "from detectron2.data import DatasetCatalog\n"
        "import vos_det.data\n"
        "voc = DatasetCatalog.get('voc_2007_test')\n"
        "ood = DatasetCatalog.get('coco_ood_val')\n"
        "print(len(voc), voc[0]['annotations'][0]['category_id'], ood[0]['height'])\n"
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", str(VOC_CLASS_NAMES.index("dog")), "11"]
