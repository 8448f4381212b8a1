"""The embedded synthetic benchmark: determinism, box accuracy, class separation, loading, cache."""

import json
import multiprocessing
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from vos_det.data import (
    SYNTHETIC_ID_CLASSES,
    SYNTHETIC_OOD_CLASSES,
    SyntheticBenchmarkSpec,
    generate_synthetic_benchmark,
    register_synthetic_benchmark,
)
from vos_det.core.files import default_datasets_root
from vos_det.core.shape_scenes import ShapeDrawing, draw_shape_mask, render_scene
from vos_det.data.synthetic import SYNTHETIC_SPLITS
from vos_det.data.synthetic_draws import synthetic_benchmark_setup, synthetic_draw_name

SMALL = {"num_train": 12, "num_id_test": 6, "num_ood_test": 6, "image_size": 96}
MIXED_CATEGORIES = list(SYNTHETIC_ID_CLASSES) + ["unknown"]


def _generate(root, **overrides):
    return generate_synthetic_benchmark(str(root), SyntheticBenchmarkSpec(**{**SMALL, **overrides}))


def _read_tree(root):
    """{relative path: bytes} of every file under ``root``."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def _mtimes(root):
    return {
        os.path.join(directory, name): os.stat(os.path.join(directory, name)).st_mtime_ns
        for directory, _, names in os.walk(root)
        for name in names
    }


def _load_coco(paths, split):
    with open(paths[f"{split}_json"]) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """Paths of a small benchmark generated once for the read-only tests."""
    return _generate(tmp_path_factory.mktemp("synthetic") / "bench")


@pytest.fixture
def catalogs(monkeypatch):
    """Let a test register datasets; the catalogs are restored afterwards."""
    monkeypatch.setattr(DatasetCatalog, "data", dict(DatasetCatalog.data))
    monkeypatch.setattr(MetadataCatalog, "data", dict(MetadataCatalog.data))


@pytest.mark.slow
def test_layout_and_returned_paths(benchmark):
    root = benchmark["root"]
    assert sorted(os.listdir(root)) == [
        "MANIFEST.json",
        "annotations",
        "id_test",
        "mixed_test",
        "ood_test",
        "train",
    ]
    assert SYNTHETIC_SPLITS == ("train", "id_test", "ood_test", "mixed_test")
    for split, count in zip(SYNTHETIC_SPLITS, (12, 6, 6, 6)):
        assert benchmark[f"{split}_images"] == os.path.join(root, split)
        assert benchmark[f"{split}_json"] == os.path.join(root, "annotations", f"{split}.json")
        assert len(os.listdir(benchmark[f"{split}_images"])) == count
    with open(benchmark["manifest"]) as f:
        manifest = json.load(f)
    assert manifest["parameters"] == {**SMALL, "seed": 0, "num_mixed_test": 6}
    assert len(manifest["files"]) == 12 + 6 + 6 + 6 + 4


@pytest.mark.slow
def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path):
    first = _read_tree(_generate(tmp_path / "a", seed=3)["root"])
    second = _read_tree(_generate(tmp_path / "b", seed=3)["root"])
    other = _read_tree(_generate(tmp_path / "c", seed=4)["root"])
    assert first == second
    assert "mixed_test/000001.png" in first and "annotations/mixed_test.json" in first
    assert first.keys() == other.keys()
    changed = [path for path in first if first[path] != other[path]]
    assert len(changed) == len(first)  # every image, every annotation file and the manifest


@pytest.mark.slow
def test_splits_hold_different_images(benchmark):
    train = _read_tree(benchmark["train_images"])
    id_test = _read_tree(benchmark["id_test_images"])
    assert not set(train.values()) & set(id_test.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    "split, categories, category_ids, shapes",
    [
        ("train", SYNTHETIC_ID_CLASSES, [1, 2, 3], SYNTHETIC_ID_CLASSES),
        ("id_test", SYNTHETIC_ID_CLASSES, [1, 2, 3], SYNTHETIC_ID_CLASSES),
        ("ood_test", SYNTHETIC_OOD_CLASSES, [4, 5, 6, 7], SYNTHETIC_OOD_CLASSES),
        (
            "mixed_test",
            MIXED_CATEGORIES,
            [1, 2, 3, 8],
            SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES,
        ),
    ],
)
def test_each_split_holds_only_its_classes_and_every_image_an_object(
    benchmark, split, categories, category_ids, shapes
):
    coco = _load_coco(benchmark, split)
    assert [c["name"] for c in coco["categories"]] == list(categories)
    assert [c["id"] for c in coco["categories"]] == category_ids
    assert {a["category_id"] for a in coco["annotations"]} <= set(category_ids)
    assert {a["shape"]["name"] for a in coco["annotations"]} <= set(shapes)
    image_ids = [image["id"] for image in coco["images"]]
    assert len(set(image_ids)) == len(image_ids)
    assert {a["image_id"] for a in coco["annotations"]} == set(image_ids)
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    for image in coco["images"]:
        assert (image["height"], image["width"]) == (96, 96)
        assert os.path.isfile(os.path.join(benchmark[f"{split}_images"], image["file_name"]))


def test_id_and_ood_classes_are_disjoint():
    assert not set(SYNTHETIC_ID_CLASSES) & set(SYNTHETIC_OOD_CLASSES)


@pytest.mark.slow
def test_mixed_split_holds_known_and_unknown_objects_half_each(tmp_path):
    """Every unseen shape is "unknown" (id 8) and keeps its true shape; every known one keeps
    its own class; each object is unknown with probability 1/2."""
    coco = _load_coco(_generate(tmp_path / "b", num_mixed_test=60), "mixed_test")
    ids = {c["name"]: c["id"] for c in coco["categories"]}
    assert ids == {"circle": 1, "square": 2, "triangle": 3, "unknown": 8}
    unknown = [a for a in coco["annotations"] if a["category_id"] == 8]
    known = [a for a in coco["annotations"] if a["category_id"] != 8]
    assert {a["shape"]["name"] for a in unknown} == set(SYNTHETIC_OOD_CLASSES)
    assert all(ids[a["shape"]["name"]] == a["category_id"] for a in known)
    assert len(unknown) / len(coco["annotations"]) == pytest.approx(0.5, abs=0.15)
    kinds = {}
    for annotation in coco["annotations"]:
        kinds.setdefault(annotation["image_id"], set()).add(annotation["category_id"] == 8)
    assert {frozenset(k) for k in kinds.values()} == {
        frozenset({True}),
        frozenset({False}),
        frozenset({True, False}),
    }  # images with unknown objects only, known only, and both
    assert all({"visible_fraction", "area", "bbox"} <= a.keys() for a in unknown)


@pytest.mark.slow
def test_adding_the_mixed_split_leaves_the_other_splits_unchanged(benchmark, tmp_path):
    """An image depends only on the seed, its split's index and its own index: the images of
    the first three splits are the scenes of split indices 0-2, whatever the mixed count."""
    other = _read_tree(_generate(tmp_path / "b", num_mixed_test=2)["root"])
    here = _read_tree(benchmark["root"])
    mixed = {path for path in here if "mixed_test" in path} | {"MANIFEST.json"}
    assert {path: other[path] for path in other.keys() - mixed} == {
        path: here[path] for path in here.keys() - mixed
    }
    assert len(here.keys() - mixed) == 12 + 6 + 6 + 3
    for split_index, classes in ((0, SYNTHETIC_ID_CLASSES), (2, SYNTHETIC_OOD_CLASSES)):
        split = SYNTHETIC_SPLITS[split_index]
        rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(split_index, 4)))
        pixels, _ = render_scene(rng, classes, 96)
        image = cv2.imread(os.path.join(benchmark[f"{split}_images"], "000005.png"))
        np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), pixels)


@pytest.mark.slow
@pytest.mark.parametrize("split", SYNTHETIC_SPLITS)
def test_boxes_are_the_tight_extent_of_the_drawn_shapes(benchmark, split):
    """Redraw every shape from its recorded parameters: its box is the extent of its pixels, and
    the image shows its colour exactly on the pixels that later shapes leave visible."""
    coco = _load_coco(benchmark, split)
    images = {image["id"]: image for image in coco["images"]}
    by_image = {}
    for annotation in coco["annotations"]:  # annotations are listed in drawing order
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image_id, annotations in by_image.items():
        path = os.path.join(benchmark[f"{split}_images"], images[image_id]["file_name"])
        pixels = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        masks = [draw_shape_mask(ShapeDrawing.from_json(a["shape"]), 96) for a in annotations]
        for index, (annotation, mask) in enumerate(zip(annotations, masks)):
            rows, columns = np.nonzero(mask)
            x0, y0 = columns.min(), rows.min()
            extent = [x0, y0, columns.max() - x0 + 1, rows.max() - y0 + 1]
            np.testing.assert_allclose(annotation["bbox"], extent, atol=1)
            visible = mask.copy()
            for later in masks[index + 1 :]:
                visible &= ~later
            assert annotation["area"] == visible.sum()
            assert annotation["visible_fraction"] == pytest.approx(visible.sum() / mask.sum(), 1e-3)
            assert annotation["visible_fraction"] >= 0.4  # at most 60% hidden
            assert (pixels[visible] == annotation["shape"]["colour"]).all()


@pytest.mark.slow
def test_shapes_are_occluded_sometimes_and_vary_in_size(tmp_path):
    coco = _load_coco(_generate(tmp_path / "b", num_train=60), "train")
    fractions = [a["visible_fraction"] for a in coco["annotations"]]
    assert min(fractions) < 0.9 and np.mean(np.array(fractions) == 1.0) > 0.5
    sides = [max(a["bbox"][2:]) for a in coco["annotations"]]
    assert min(sides) < 24 * 0.75 and max(sides) > 44 * 0.75  # 18-48 px at 128 px, scaled to 96
    assert {a["shape"]["name"] for a in coco["annotations"]} == set(SYNTHETIC_ID_CLASSES)


@pytest.mark.parametrize(
    "shape, detail, area",  # shape area / radius^2
    [
        ("circle", 0.0, np.pi),
        ("square", 0.0, 2.0),
        ("triangle", 0.0, 3 * np.sqrt(3) / 4),
        ("ring", 0.5, np.pi * (1 - 0.25)),
        ("star", 0.5, 10 * 0.5 * 0.5 * np.sin(np.deg2rad(36))),
        ("cross", 0.3, 4 * 0.3 * (2 * np.sqrt(1 - 0.09)) - 4 * 0.09),
        ("crescent", 0.5, np.pi - (2 * np.arccos(0.25) - 0.5 * np.sqrt(1 - 0.0625))),
    ],
)
def test_drawn_shapes_have_their_geometric_area(shape, detail, area):
    drawing = ShapeDrawing(shape, (40.0, 41.0), 30.0, 17.0, detail, (255, 0, 0))
    mask = draw_shape_mask(drawing, 96)
    assert mask.sum() == pytest.approx(area * 30.0**2, rel=0.04)
    rows, columns = np.nonzero(mask)
    assert np.hypot(columns + 0.5 - 40.0, rows + 0.5 - 41.0).max() <= 30.0 + 1.0


def test_unknown_shape_is_rejected():
    with pytest.raises(ValueError, match="Unknown shape 'pentagon'"):
        draw_shape_mask(ShapeDrawing("pentagon", (10.0, 10.0), 5.0, 0.0, 0.0, (0, 0, 0)), 32)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_train": 0}, "num_train must be >= 1"),
        ({"image_size": 32}, "image_size must be >= 64"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"num_ood_test": 2.5}, "num_ood_test must be an integer"),
        ({"num_mixed_test": 0}, "num_mixed_test must be >= 1"),
    ],
)
def test_invalid_parameters_are_rejected(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _generate(tmp_path / "x", **overrides)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_id_test", 0, "num_id_test must be >= 1, got 0"),
        ("image_size", 63, "image_size must be >= 64, got 63"),
        ("seed", -2, "seed must be >= 0, got -2"),
        ("num_train", True, "num_train must be an integer, got True"),
        ("seed", "1", "seed must be an integer, got '1'"),
        ("num_ood_test", "1", "num_ood_test must be an integer, got '1'"),
        ("num_ood_test", 0, "num_ood_test must be >= 1, got 0"),
        ("num_mixed_test", 1.0, "num_mixed_test must be an integer, got 1.0"),
    ],
)
def test_spec_rejects_invalid_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        SyntheticBenchmarkSpec(**{field: value})


def test_spec_defaults_and_manifest_parameters():
    spec = SyntheticBenchmarkSpec(num_train=np.int64(7))
    assert type(spec.num_train) is int and spec == SyntheticBenchmarkSpec(num_train=7)
    assert list(spec.as_dict().items()) == [
        ("num_train", 7),
        ("num_id_test", 500),
        ("num_ood_test", 500),
        ("image_size", 128),
        ("seed", 0),
        ("num_mixed_test", 200),
    ]
    assert spec.split_sizes() == {"train": 7, "id_test": 500, "ood_test": 500, "mixed_test": 200}


@pytest.mark.parametrize(
    "overrides, num_mixed_test",
    [
        ({}, 200),  # the built-in draw
        ({"num_ood_test": 6}, 6),  # small draws stay small
        ({"num_ood_test": np.int64(150)}, 150),
        ({"num_ood_test": 201}, 200),
        ({"num_ood_test": 6, "num_mixed_test": 40}, 40),  # an explicit count wins
    ],
)
def test_mixed_count_follows_the_ood_count_up_to_200(overrides, num_mixed_test):
    spec = SyntheticBenchmarkSpec(**overrides)
    assert type(spec.num_mixed_test) is int and spec.num_mixed_test == num_mixed_test
    assert spec.split_sizes()["mixed_test"] == num_mixed_test
    assert spec == SyntheticBenchmarkSpec(**{**overrides, "num_mixed_test": num_mixed_test})


@pytest.mark.parametrize(
    "spec, name",
    [
        (SyntheticBenchmarkSpec(), "synthetic"),
        (SyntheticBenchmarkSpec(num_mixed_test=200), "synthetic"),
        (SyntheticBenchmarkSpec(seed=1), "synthetic_seed1"),
        (SyntheticBenchmarkSpec(image_size=256, seed=1), "synthetic_256px_seed1"),
        (
            SyntheticBenchmarkSpec(400, 500, 500, 256, 1, 100),
            "synthetic_400_500_500_100_256px_seed1",
        ),
        (SyntheticBenchmarkSpec(8, 4, 4), "synthetic_8_4_4"),
        (SyntheticBenchmarkSpec(8, 4, 4, num_mixed_test=4), "synthetic_8_4_4"),
        (SyntheticBenchmarkSpec(8, 4, 4, num_mixed_test=2), "synthetic_8_4_4_2"),
        (SyntheticBenchmarkSpec(400, 500, 500, num_mixed_test=100), "synthetic_400_500_500_100"),
    ],
)
def test_draw_names_show_the_mixed_count_only_when_it_is_not_its_default(spec, name):
    assert synthetic_draw_name(spec) == name


def test_draw_setup_takes_three_or_four_image_counts(tmp_path, monkeypatch, catalogs):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    for images, folder in (([8, 4, 4], "synthetic_8_4_4"), ([8, 4, 4, 2], "synthetic_8_4_4_2")):
        names, _ = synthetic_benchmark_setup(images)
        assert names["mixed_test"] == f"{folder}_mixed_test"
        metadata = MetadataCatalog.get(names["mixed_test"])
        assert metadata.json_file == str(tmp_path / folder / "annotations" / "mixed_test.json")
    with pytest.raises(ValueError, match="images must hold 3 or 4 counts"):
        synthetic_benchmark_setup([8, 4])


@pytest.mark.slow
def test_manifest_header_bytes_are_stable(benchmark):
    """Folders written before the parameters became a dataclass stay valid: same header bytes."""
    with open(benchmark["manifest"], encoding="utf-8") as f:
        text = f.read()
    assert text.startswith(
        '{"generator":"vos_det.data.synthetic","generator_version":2,"parameters":'
        '{"num_train":12,"num_id_test":6,"num_ood_test":6,"image_size":96,"seed":0,'
        '"num_mixed_test":6},'
        '"id_classes":["circle","square","triangle"],'
        '"ood_classes":["star","cross","ring","crescent"],"files":{"train/000001.png":"'
    )


@pytest.mark.slow
def test_second_call_reuses_the_folder(tmp_path, caplog):
    paths = _generate(tmp_path / "bench")
    before = _mtimes(paths["root"])
    caplog.clear()  # only the second call's records count (other tests may enable INFO logs)
    with caplog.at_level("INFO", logger="vos_det.data.synthetic"):
        assert _generate(tmp_path / "bench") == paths
    assert _mtimes(paths["root"]) == before
    assert "Generating" not in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", ["truncate_image", "delete_image", "corrupt_json", "no_manifest"]
)
def test_damaged_folder_is_generated_again(tmp_path, damage, caplog):
    paths = _generate(tmp_path / "bench")
    original = _read_tree(paths["root"])
    image = os.path.join(paths["train_images"], "000003.png")
    if damage == "truncate_image":
        with open(image, "r+b") as f:
            f.truncate(100)
    elif damage == "delete_image":
        os.remove(image)
    elif damage == "corrupt_json":
        with open(paths["id_test_json"], "a") as f:
            f.write(" ")
    else:
        os.remove(paths["manifest"])
    with caplog.at_level("INFO", logger="vos_det.data.synthetic"):
        _generate(tmp_path / "bench")
    assert _read_tree(paths["root"]) == original
    assert (
        "Generating the synthetic benchmark (12 train, 6 ID test, 6 OOD test, 6 mixed test images"
        in caplog.text
    )
    assert "30 images in" in caplog.text
    assert os.listdir(tmp_path) == ["bench"]  # no staging folder or lock file left


@pytest.mark.slow
def test_other_parameters_replace_the_folder(tmp_path):
    _generate(tmp_path / "bench")
    paths = _generate(tmp_path / "bench", num_train=5, seed=1)
    assert len(os.listdir(paths["train_images"])) == 5
    with open(paths["manifest"]) as f:
        assert json.load(f)["parameters"]["seed"] == 1


def test_folder_with_other_files_is_never_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="contains other files \\(notes.txt\\)"):
        _generate(tmp_path / "mine")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def _generate_in_child(root):
    _generate(root)


@pytest.mark.slow
def test_concurrent_processes_leave_one_intact_benchmark(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_generate_in_child, args=(tmp_path / "bench",)) for _ in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    expected = _read_tree(_generate(tmp_path / "expected")["root"])
    assert _read_tree(tmp_path / "bench") == expected


@pytest.mark.slow
def test_registered_datasets_load_and_generate_on_first_use(tmp_path, catalogs):
    root = tmp_path / "synthetic"
    spec = SyntheticBenchmarkSpec(**SMALL)
    names = register_synthetic_benchmark(str(root), name_prefix="test_synth", spec=spec)
    assert names == {s: f"test_synth_{s}" for s in SYNTHETIC_SPLITS}
    assert not root.exists()  # registration generates nothing

    for split in ("train", "id_test"):
        metadata = MetadataCatalog.get(names[split])
        assert metadata.thing_classes == metadata.id_classes == list(SYNTHETIC_ID_CLASSES)
        assert metadata.evaluator_type == "coco" and metadata.id_dataset == "synthetic"
        dicts = DatasetCatalog.get(names[split])
        coco = _load_coco(generate_synthetic_benchmark(str(root), spec), split)
        assert len(dicts) == len(coco["images"])
        expected = {}
        for annotation in coco["annotations"]:
            expected.setdefault(annotation["image_id"], []).append(
                (annotation["bbox"], annotation["category_id"] - 1)
            )
        for record in dicts:
            assert record["file_name"] == os.path.join(
                metadata.image_root, f"{record['image_id']:06d}.png"
            )
            assert [a["bbox_mode"] for a in record["annotations"]] == [BoxMode.XYWH_ABS] * len(
                record["annotations"]
            )
            got = [(a["bbox"], a["category_id"]) for a in record["annotations"]]
            assert got == expected[record["image_id"]]

    metadata = MetadataCatalog.get(names["ood_test"])
    assert metadata.evaluator_type == "ood"
    assert metadata.thing_classes == metadata.id_classes == list(SYNTHETIC_ID_CLASSES)
    assert metadata.json_file == str(root / "annotations" / "ood_test.json")
    dicts = DatasetCatalog.get(names["ood_test"])
    assert len(dicts) == 6
    assert all(d["annotations"] == [] and (d["height"], d["width"]) == (96, 96) for d in dicts)
    assert all(os.path.isfile(d["file_name"]) for d in dicts)

    metadata = MetadataCatalog.get(names["mixed_test"])
    assert metadata.evaluator_type == "open_set"
    assert metadata.thing_classes == MIXED_CATEGORIES
    assert metadata.id_classes == list(SYNTHETIC_ID_CLASSES)
    assert metadata.json_file == str(root / "annotations" / "mixed_test.json")
    dicts = DatasetCatalog.get(names["mixed_test"])
    coco = _load_coco(generate_synthetic_benchmark(str(root), spec), "mixed_test")
    contiguous = {1: 0, 2: 1, 3: 2, 8: 3}
    expected = {}
    for annotation in coco["annotations"]:
        expected.setdefault(annotation["image_id"], []).append(
            (annotation["bbox"], contiguous[annotation["category_id"]])
        )
    assert len(dicts) == 6
    for record in dicts:
        got = [(a["bbox"], a["category_id"]) for a in record["annotations"]]
        assert got == expected[record["image_id"]]
        assert os.path.isfile(record["file_name"])
    assert 3 in {a["category_id"] for d in dicts for a in d["annotations"]}


def test_registration_skips_registered_names(tmp_path, catalogs):
    register_synthetic_benchmark(str(tmp_path / "a"), name_prefix="test_synth_skip")
    register_synthetic_benchmark(str(tmp_path / "b"), name_prefix="test_synth_skip")
    assert MetadataCatalog.get("test_synth_skip_train").image_root == str(tmp_path / "a" / "train")


def test_synthetic_sets_registered_at_import_under_detectron2_datasets():
    root = os.path.join(default_datasets_root(), "synthetic")
    for split in SYNTHETIC_SPLITS:
        metadata = MetadataCatalog.get(f"synthetic_{split}")
        assert metadata.image_root == os.path.join(root, split)
        assert metadata.json_file == os.path.join(root, "annotations", f"{split}.json")
        expected = {"ood_test": "ood", "mixed_test": "open_set"}.get(split, "coco")
        assert metadata.evaluator_type == expected
