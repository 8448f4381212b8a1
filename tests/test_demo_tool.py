"""tools/demo.py end to end on a tiny trained model, and the colours of the drawn boxes."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pytest
import torch
from detectron2.engine import DefaultPredictor
from detectron2.structures import Boxes, Instances

from tiny_detection import CLASS_COLOURS
from tool_scripts import load_tool
from vos_det.utils.visualize import draw_open_set_detections
from vos_det.utils.weights import check_weights

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tools" / "demo.py"
MAX_DETECTIONS = 20  # per image: enough to check, few enough to draw fast


def _write_image(path: Path, height: int, width: int, seed: int) -> None:
    """Noise with two of the tiny dataset's coloured rectangles, as a BGR PNG."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    for colour, (x0, y0) in zip(rng.permutation(CLASS_COLOURS)[:2], [(8, 8), (60, 40)]):
        cv2.rectangle(image, (x0, y0), (x0 + 40, y0 + 30), tuple(int(c) for c in colour), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def _run_demo(
    config: Path,
    weights: Path,
    output: Path,
    ood_threshold: float,
    *inputs: str,
    cwd: Path = REPO,
    overrides: Sequence[str] = (),
):
    """tools/demo.py in a subprocess, keeping every box (confidence threshold 0); ``overrides``
    are more ``KEY VALUE`` config pairs."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    command = [sys.executable, str(DEMO), "--config-file", str(config), "--input", *inputs]
    command += ["--output", str(output), "--confidence-threshold", "0.0"]
    command += ["--ood-threshold", repr(ood_threshold), "MODEL.WEIGHTS", str(weights)]
    command += ["TEST.DETECTIONS_PER_IMAGE", str(MAX_DETECTIONS), *overrides]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _strict_json(path: Path):
    """Parse a JSON file, rejecting the non-standard constants NaN, Infinity and -Infinity."""

    def reject(constant: str):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=reject)


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder``, relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def model_files(trained_vos_run):
    """The session's tiny VOS model: (config YAML, weights, the frozen config)."""
    cfg, _ = trained_vos_run
    output = Path(cfg.OUTPUT_DIR)
    return output / "config.yaml", output / "model_final.pth", cfg


def _middle_gap(scores: np.ndarray) -> float:
    """A threshold in the widest gap between the middle half of ``scores``: some fall each side."""
    ordered = np.sort(scores)
    low, high = len(ordered) // 4, max(3 * len(ordered) // 4, len(ordered) // 4 + 1)
    gaps = ordered[low + 1 : high + 1] - ordered[low:high]
    index = low + int(np.argmax(gaps))
    assert gaps.max() > 1e-4, "the ID scores are too close to split robustly"
    return float(ordered[index] + ordered[index + 1]) / 2


@pytest.fixture(scope="module")
def demo_run(model_files, tmp_path_factory):
    """The demo on a single image (96x128), a folder (2 images) and a glob (2 of 3 images),
    with an OOD threshold splitting the in-process predictor's ID scores on the single image.

    Returns:
        (result, inputs folder, output folder, OOD threshold, in-process instances)
    """
    config, weights, cfg = model_files
    root = tmp_path_factory.mktemp("demo_inputs")
    _write_image(root / "single" / "solo.png", 96, 128, seed=0)
    _write_image(root / "folder" / "a.png", 128, 128, seed=1)
    _write_image(root / "folder" / "b.png", 128, 128, seed=2)
    (root / "folder" / "notes.txt").write_text("not an image")
    for index, name in enumerate(["g1.png", "g2.png", "other.png"]):
        _write_image(root / "globbed" / name, 128, 128, seed=3 + index)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = MAX_DETECTIONS
    image = cv2.imread(str(root / "single" / "solo.png"))
    expected = DefaultPredictor(cfg)(image)["instances"]
    threshold = _middle_gap(expected.id_scores.numpy())
    output = root / "out"
    inputs = [str(root / "single" / "solo.png"), str(root / "folder"), str(root / "globbed/g*.png")]
    result = _run_demo(config, weights, output, threshold, *inputs)
    return result, root, output, threshold, expected


@pytest.mark.slow
def test_demo_writes_upscaled_pictures_and_detections(demo_run):
    result, _, output, threshold, _ = demo_run
    assert result.returncode == 0, result.stderr
    expected = {"solo.png": (384, 512), "a.png": (384, 384), "b.png": (384, 384)}
    expected.update({"g1.png": (384, 384), "g2.png": (384, 384)})
    for name, shape in expected.items():
        picture = cv2.imread(str(output / name))
        assert picture is not None and picture.shape == (*shape, 3), name
    assert not (output / "other.png").exists()
    records = _strict_json(output / "detections.json")
    assert [Path(r["file_name"]).name for r in records] == list(expected)
    for record in records:
        size = (96, 128) if "solo" in record["file_name"] else (128, 128)
        assert (record["height"], record["width"]) == size
        assert 0 < len(record["detections"]) <= MAX_DETECTIONS, record["file_name"]
        for detection in record["detections"]:
            assert detection["is_ood"] == (detection["id_score"] < threshold)
            assert detection["class"] == f"class {detection['class_id']}"
            assert 0.0 <= detection["score"] <= 1.0 and len(detection["box"]) == 4
    log = result.stdout + result.stderr
    for record in records:
        flagged = sum(d["is_ood"] for d in record["detections"])
        count = len(record["detections"])
        assert f"{record['file_name']}: {count} detections, {flagged} flagged OOD" in log


@pytest.mark.slow
def test_demo_scores_match_the_predictor_in_process(demo_run):
    _, _, output, threshold, instances = demo_run
    detections = json.loads((output / "detections.json").read_text())[0]["detections"]
    assert len(detections) == len(instances)
    np.testing.assert_allclose(
        [d["id_score"] for d in detections], instances.id_scores.numpy(), rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        [d["box"] for d in detections], instances.pred_boxes.tensor.numpy(), rtol=0, atol=1e-3
    )
    assert [d["class_id"] for d in detections] == instances.pred_classes.tolist()
    is_ood = [d["is_ood"] for d in detections]
    assert is_ood == (instances.id_scores < threshold).tolist()
    assert any(is_ood) and not all(is_ood)


@pytest.mark.slow
def test_corrupt_image_is_named_skipped_and_fails_the_run(model_files, tmp_path):
    config, weights, _ = model_files
    _write_image(tmp_path / "in" / "good.png", 128, 128, seed=7)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    result = _run_demo(config, weights, tmp_path / "out", 0.5, str(tmp_path / "in"))
    assert result.returncode == 1
    log = result.stdout + result.stderr
    assert f"{tmp_path / 'in' / 'broken.png'}: cannot read the image" in log
    assert (tmp_path / "out" / "good.png").is_file()
    assert not (tmp_path / "out" / "broken.png").exists()
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [Path(r["file_name"]).name for r in records] == ["good.png"]


@pytest.mark.slow
def test_glob_matching_nothing_is_a_clear_error(model_files, tmp_path):
    config, weights, _ = model_files
    pattern = str(tmp_path / "nowhere" / "*.jpg")
    result = _run_demo(config, weights, tmp_path / "out", 0.5, pattern)
    assert result.returncode == 2
    assert f"--input '{pattern}' matched no image" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_weights_and_colliding_names_are_clear_errors(tmp_path):
    demo = load_tool("demo")
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        check_weights(str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS is empty"):
        check_weights("")
    check_weights("detectron2://ImageNetPretrained/MSRA/R-50.pkl")  # downloaded when loaded
    for folder in ("x", "y"):
        _write_image(tmp_path / folder / "same.png", 64, 64, seed=0)
    with pytest.raises(ValueError, match="share the file name 'same.png'"):
        demo.collect_inputs([str(tmp_path / "x"), str(tmp_path / "y" / "same.png")])
    only = str(tmp_path / "x" / "same.png")
    assert demo.collect_inputs([only, str(tmp_path / "x"), only]) == [only]


@pytest.mark.slow
def test_output_folder_holding_the_inputs_is_refused_and_nothing_changes(model_files, tmp_path):
    """The reported case: ``--input "*.jpg" --output .`` replaced the originals, exit 0."""
    config, weights, _ = model_files
    photos = tmp_path / "photos"
    for seed, name in enumerate(["a.jpg", "b.jpg"]):
        _write_image(photos / name, 128, 128, seed=seed)
    before = _snapshot(photos)
    result = _run_demo(config, weights, Path("."), 0.5, "*.jpg", cwd=photos)
    assert result.returncode == 2
    assert "--output .: writing ./a.jpg would overwrite the input a.jpg" in result.stderr
    assert _snapshot(photos) == before


@pytest.mark.parametrize("spelling", ["trailing slash", "dot-dot", "symlinked folder", "links"])
def test_every_spelling_of_an_input_is_caught(tmp_path, spelling):
    demo = load_tool("demo")
    photos = tmp_path / "photos"
    _write_image(photos / "a.png", 64, 64, seed=0)
    output = {
        "trailing slash": f"{photos}{os.sep}",
        "dot-dot": str(photos / ".." / "photos"),
        "symlinked folder": str(tmp_path / "link"),
        "links": str(tmp_path / "links"),
    }[spelling]
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "a.png").symlink_to(photos / "a.png")
    (tmp_path / "links" / "detections.json").hardlink_to(photos / "a.png")
    with pytest.raises(ValueError, match=r"would overwrite the input .*a\.png; choose an --output"):
        demo.check_outputs([str(photos / "a.png")], output)


def test_outputs_of_an_earlier_run_may_be_replaced(tmp_path):
    demo = load_tool("demo")
    _write_image(tmp_path / "in" / "a.png", 64, 64, seed=0)
    _write_image(tmp_path / "out" / "a.png", 64, 64, seed=1)
    (tmp_path / "out" / "detections.json").write_text("[]")
    demo.check_outputs([str(tmp_path / "in" / "a.png")], str(tmp_path / "out"))
    demo.check_outputs([str(tmp_path / "in" / "a.png")], str(tmp_path / "not yet made"))


@pytest.mark.slow
def test_odd_images_are_skipped_by_name_and_the_batch_finishes(model_files, tmp_path):
    """A 1 x 3000 image (resized to height 0), a truncated JPEG, and a 4 x 1000 one that the
    drawing used to enlarge to 384 x 96000 pixels, at the usual test size (short side 800)."""
    config, weights, _ = model_files
    inputs = tmp_path / "in"
    _write_image(inputs / "good.png", 128, 128, seed=0)
    cv2.imwrite(str(inputs / "strip.png"), np.full((4, 1000, 3), 200, dtype=np.uint8))
    cv2.imwrite(str(inputs / "thin.png"), np.full((1, 3000, 3), 200, dtype=np.uint8))
    _write_image(inputs / "truncated.jpg", 128, 128, seed=1)
    whole = (inputs / "truncated.jpg").read_bytes()
    (inputs / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    before = _snapshot(inputs)
    overrides = ["INPUT.MIN_SIZE_TEST", "800", "INPUT.MAX_SIZE_TEST", "1333"]
    result = _run_demo(config, weights, tmp_path / "out", 0.5, str(inputs), overrides=overrides)
    assert result.returncode == 1, result.stderr
    log = result.stdout + result.stderr
    assert f"{inputs / 'thin.png'}: the detector cannot take this image of 1 x 3000 pixels" in log
    assert f"{inputs / 'truncated.jpg'}: the image file is damaged (image file is truncated" in log
    assert f"2 image(s) skipped: {inputs / 'thin.png'}, {inputs / 'truncated.jpg'}" in log
    records = _strict_json(tmp_path / "out" / "detections.json")
    assert [Path(r["file_name"]).name for r in records] == ["good.png", "strip.png"]
    assert cv2.imread(str(tmp_path / "out" / "strip.png")).shape == (16, 4096, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "detections.json",
        "good.png",
        "strip.png",
    ]
    assert _snapshot(inputs) == before


@pytest.mark.slow
def test_non_finite_id_scores_are_written_as_null_and_flagged_ood(model_files, tmp_path):
    config, weights, _ = model_files
    checkpoint = torch.load(weights, map_location="cpu")
    logistic = [key for key in checkpoint["model"] if key.endswith("logistic.weight")]
    assert logistic, "no logistic layer in the checkpoint"
    for key in logistic:
        checkpoint["model"][key].fill_(float("nan"))  # every ID score becomes NaN
    torch.save(checkpoint, tmp_path / "nan.pth")
    _write_image(tmp_path / "in" / "a.png", 128, 128, seed=0)
    result = _run_demo(config, tmp_path / "nan.pth", tmp_path / "out", 0.5, str(tmp_path / "in"))
    assert result.returncode == 0, result.stderr
    (record,) = _strict_json(tmp_path / "out" / "detections.json")
    count = len(record["detections"])
    assert count > 0
    assert all(d["id_score"] is None and d["is_ood"] is True for d in record["detections"])
    assert all(0.0 <= d["score"] <= 1.0 for d in record["detections"])
    log = result.stdout + result.stderr
    path = tmp_path / "in" / "a.png"
    message = f"{path}: {count} of {count} boxes have a non-finite ID score (written as null, "
    assert message + "flagged OOD)" in log
    assert f"{path}: {count} detections, {count} flagged OOD" in log


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_confidence_threshold_outside_0_1_is_a_usage_error(value, capsys):
    parser = load_tool("demo").build_parser()
    arguments = ["--config-file", "c.yaml", "--input", "x.png", "--output", "out"]
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(arguments + ["--confidence-threshold", value])
    assert exit_info.value.code == 2
    message = f"argument --confidence-threshold: {value} is not a class probability"
    assert message + ": pass a value in [0, 1]" in capsys.readouterr().err
    for accepted in ("0", "1"):
        assert parser.parse_args(arguments + ["--confidence-threshold", accepted])


def _parsed(*extra: str):
    demo = load_tool("demo")
    parser = demo.build_parser()
    arguments = ["--config-file", "c.yaml", "--input", "x.png", "--output", "out", *extra]
    return demo.separate_overrides(parser, parser.parse_args(arguments))


def test_scores_end_at_the_first_config_key_and_late_options_are_refused(capsys):
    args = _parsed("--scores", "msp", "knn", "MODEL.WEIGHTS", "w.pth", "VOS.SCORE", "energy")
    assert args.scores == ["msp", "knn"]
    assert args.opts == ["MODEL.WEIGHTS", "w.pth", "VOS.SCORE", "energy"]
    args = _parsed("MODEL.WEIGHTS", "w.pth")
    assert args.scores == [] and args.opts == ["MODEL.WEIGHTS", "w.pth"]
    for late, named in [
        (["MODEL.WEIGHTS", "w.pth", "--scores", "msp"], "--scores comes after the KEY VALUE"),
        (["--scores", "MODEL.WEIGHTS", "w.pth"], "--scores needs a score name"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            _parsed(*late)
        assert exit_info.value.code == 2 and named in capsys.readouterr().err


def _edge_colour(picture: np.ndarray, box, scale: int) -> np.ndarray:
    """Mean RGB colour around the middle of a box's right edge in the drawn picture."""
    x, y = int(box[2] * scale), int((box[1] + box[3]) / 2 * scale)
    return picture[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).astype(float).mean(axis=0)


@pytest.mark.parametrize(
    "fields, ood_threshold, expected_ood",
    [
        ({"is_ood": torch.tensor([False, True])}, None, [False, True]),
        ({}, 0.5, [False, True]),
        ({"is_ood": torch.tensor([True, False])}, 0.5, [False, True]),  # the threshold decides
        ({}, None, [False, False]),
    ],
)
def test_drawn_boxes_are_green_when_id_and_red_when_ood(fields, ood_threshold, expected_ood):
    boxes = [[10.0, 10.0, 60.0, 110.0], [70.0, 10.0, 120.0, 110.0]]
    instances = Instances(
        (128, 128),
        pred_boxes=Boxes(torch.tensor(boxes)),
        scores=torch.tensor([0.9, 0.8]),
        pred_classes=torch.tensor([0, 1]),
        id_scores=torch.tensor([0.9, 0.2]),
        **fields,
    )
    image = np.full((128, 128, 3), 128, dtype=np.uint8)
    picture = draw_open_set_detections(image, instances, ["cat", "dog"], ood_threshold)
    assert picture.shape == (384, 384, 3) and picture.dtype == np.uint8
    for box, ood in zip(boxes, expected_ood):
        red, green, _ = _edge_colour(picture, box, scale=3)
        if ood:
            assert red > green + 50, (red, green)
        else:
            assert green > red + 50, (red, green)


def test_nan_id_score_is_drawn_red_under_a_threshold():
    instances = Instances(
        (128, 128),
        pred_boxes=Boxes(torch.tensor([[10.0, 10.0, 60.0, 110.0]])),
        scores=torch.tensor([0.9]),
        pred_classes=torch.tensor([0]),
        id_scores=torch.tensor([float("nan")]),
    )
    image = np.full((128, 128, 3), 128, dtype=np.uint8)
    picture = draw_open_set_detections(image, instances, ["cat"], 0.5)
    red, green, _ = _edge_colour(picture, [10.0, 10.0, 60.0, 110.0], scale=3)
    assert red > green + 50, (red, green)


def test_labels_of_boxes_at_the_right_edge_stay_inside_the_picture():
    """A long label on a box touching the right edge used to be cut at the picture's edge."""
    from detectron2.utils import visualizer as d2_visualizer

    drawn_texts = []
    original = d2_visualizer.VisImage.get_image

    def keep_texts(self):
        renderer = self.canvas.get_renderer()
        drawn_texts.extend(t.get_window_extent(renderer=renderer) for t in self.ax.texts)
        return original(self)

    instances = Instances((64, 64))
    instances.pred_boxes = Boxes(torch.tensor([[40.0, 20.0, 64.0, 40.0], [0.0, 0.0, 20.0, 20.0]]))
    instances.scores = torch.tensor([0.9, 0.8])
    instances.pred_classes = torch.tensor([0, 1])
    instances.id_scores = torch.tensor([-123.456, 0.5])
    d2_visualizer.VisImage.get_image = keep_texts
    try:
        picture = draw_open_set_detections(
            np.zeros((64, 64, 3), np.uint8), instances, ["a_long_class_name", "b"]
        )
    finally:
        d2_visualizer.VisImage.get_image = original
    assert len(drawn_texts) == 2
    for extent in drawn_texts:
        assert 0 <= extent.x0 and extent.x1 <= picture.shape[1]
