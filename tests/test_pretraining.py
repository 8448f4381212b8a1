"""The pretraining corpus, the Detectron2-named ResNet, the pretraining run and its weight cache."""

import json
import math
import os

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

import vos_det
from vos_det.core.shape_scenes import rasterise_polygons
from vos_det.pretraining.corpus import (
    CORPUS_KINDS,
    CorpusSpec,
    ShapeTemplate,
    benchmark_overlap,
    corpus_templates,
    render_corpus_crop,
    render_corpus_scene,
)
from vos_det.pretraining.resnet import DETECTRON2_PREFIX, ResNetGN, export_to_detectron2
from vos_det.pretraining.trainer import (
    PIXEL_MEAN_BGR,
    PIXEL_STD_BGR,
    PretrainingConfig,
    evaluate_pretrained,
    normalize_rgb,
    pretrain_backbone,
)
from vos_det.pretraining.weights import ensure_pretrained, load_pretrained_backbone

TINY = PretrainingConfig(num_classes=3, steps=2, batch_size=6, validation_crops=6)


# --- corpus -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    return corpus_templates(CorpusSpec())


def test_templates_take_turns_over_the_kinds_and_fit_the_unit_disc(corpus):
    assert len(corpus) == CorpusSpec().num_classes
    assert [t.kind for t in corpus[:14]] == list(CORPUS_KINDS) * 2
    for template in corpus:
        radii = np.linalg.norm(np.concatenate(template.filled), axis=1)
        assert radii.max() == pytest.approx(1.0)


def test_no_template_resembles_a_benchmark_shape_more_than_the_bound(corpus):
    bound = CorpusSpec().max_benchmark_iou
    overlaps = [max(benchmark_overlap(t).values()) for t in corpus]
    assert max(overlaps) <= bound
    assert min(overlaps) > 0.2  # the check compares real masks, not empty ones


def test_the_overlap_check_recognises_a_benchmark_shape():
    """Positive control: a square template, rotated, matches the benchmark's square."""
    corners = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    rotation = np.array([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]])
    overlap = benchmark_overlap(ShapeTemplate("polygon", (corners @ rotation.T,), ()))
    assert overlap["square"] > 0.95
    assert overlap["square"] == max(overlap.values())


def test_templates_depend_only_on_the_spec(corpus):
    again = corpus_templates(CorpusSpec(num_classes=7))
    for first, second in zip(corpus[:7], again):
        assert all(np.array_equal(a, b) for a, b in zip(first.filled, second.filled))
    other = corpus_templates(CorpusSpec(num_classes=7, seed=1))
    assert not np.array_equal(other[0].filled[0], corpus[0].filled[0])


def test_bounds_no_template_can_meet_are_reported():
    with pytest.raises(RuntimeError, match="max_benchmark_iou"):
        corpus_templates(CorpusSpec(num_classes=2, max_benchmark_iou=0.05))
    with pytest.raises(ValueError, match="num_classes"):
        CorpusSpec(num_classes=0)


def test_filled_polygons_are_united_not_cut_by_their_overlap():
    """Two overlapping squares: the overlap belongs to the shape (even-odd filling would cut it)."""
    first = np.array([[2.0, 2.0], [12.0, 2.0], [12.0, 12.0], [2.0, 12.0]])
    mask = rasterise_polygons([first, first + 5.0], [], 20)
    assert mask.sum() == 100 + 100 - 25
    assert mask[8:12, 8:12].all()


def test_crops_and_scenes_are_reproducible_and_hold_their_objects(corpus):
    crop = render_corpus_crop(np.random.default_rng(3), corpus, 5, 32)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, render_corpus_crop(np.random.default_rng(3), corpus, 5, 32))
    image, objects = render_corpus_scene(np.random.default_rng(4), corpus, 128)
    again, _ = render_corpus_scene(np.random.default_rng(4), corpus, 128)
    assert np.array_equal(image, again)
    assert 1 <= len(objects) <= 4
    for drawing, mask, visible in objects:
        assert 0 <= drawing.label < len(corpus)
        assert mask.any() and not (visible & ~mask).any()
        assert visible.sum() >= 0.4 * mask.sum()  # the benchmark's occlusion rule
    top = objects[-1]
    assert (image[top[2]] == np.array(top[0].colour, dtype=np.uint8)).all()


# --- the ResNet with Detectron2's names ---------------------------------------------------------


def _detectron2_resnet(depth: int = 18):
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()


@pytest.mark.parametrize("depth", [18, 34])
def test_resnet_is_detectron2s_resnet_under_the_same_names(depth):
    ours = ResNetGN(depth).eval()
    theirs = _detectron2_resnet(depth)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    images = torch.randn(2, 3, 64, 48)
    expected = theirs(images)
    outputs = ours(images)
    for stage, value in expected.items():
        torch.testing.assert_close(outputs[stage], value, rtol=0, atol=0)
    torch.testing.assert_close(ours.pooled(images), expected["res5"].mean(dim=(2, 3)))


def test_resnet_refuses_weights_that_do_not_fit():
    state = export_to_detectron2(ResNetGN())
    ResNetGN().load_detectron2_state(state)  # fits
    missing = dict(state)
    missing.pop(DETECTRON2_PREFIX + "res3.0.conv1.weight")
    with pytest.raises(KeyError, match="res3.0.conv1.weight"):
        ResNetGN().load_detectron2_state(missing)
    with pytest.raises(ValueError, match=r"res2.0.conv1.weight has shape"):
        ResNetGN().load_detectron2_state(
            {**state, DETECTRON2_PREFIX + "res2.0.conv1.weight": torch.zeros(1)}
        )
    with pytest.raises(KeyError, match="unexpected backbone parameter .*extra"):
        ResNetGN().load_detectron2_state({**state, DETECTRON2_PREFIX + "extra": torch.zeros(1)})


# --- the pretraining run ------------------------------------------------------------------------


def test_normalisation_is_the_detectors():
    rgb = torch.tensor([[[[0]], [[128]], [[255]]]], dtype=torch.uint8)  # (1, 3, 1, 1)
    expected = [(255 - PIXEL_MEAN_BGR[0]) / PIXEL_STD_BGR[0], (128 - PIXEL_MEAN_BGR[1]) / PIXEL_STD_BGR[1],
                (0 - PIXEL_MEAN_BGR[2]) / PIXEL_STD_BGR[2]]
    torch.testing.assert_close(normalize_rgb(rgb).flatten(), torch.tensor(expected))
    torch.testing.assert_close(normalize_rgb(rgb.float() / 255), normalize_rgb(rgb))


def test_learning_rate_warms_up_then_decays_to_zero():
    config = PretrainingConfig(steps=100, warmup_steps=10, learning_rate=0.2)
    assert config.learning_rate_at(0) == pytest.approx(0.02)
    assert config.learning_rate_at(9) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert config.learning_rate_at(50) == pytest.approx(0.1)
    assert config.learning_rate_at(99) < 0.001


def test_pretraining_is_deterministic_and_trains_every_layer():
    torch.set_num_threads(1)
    first = pretrain_backbone(TINY, loader_workers=0)
    second = pretrain_backbone(TINY, loader_workers=0)
    torch.manual_seed(TINY.seed)
    initial = ResNetGN(TINY.depth).state_dict()
    for name, value in first.backbone.state_dict().items():
        assert torch.equal(value, second.backbone.state_dict()[name]), name
        assert not torch.equal(value, initial[name]), f"{name} was not trained"
    assert [entry["step"] for entry in first.history] == [1, 2]


def test_held_out_accuracy_counts_correct_crops():
    """A classifier that always answers class 0 is right on a third of 3-class crops."""
    result = pretrain_backbone(TINY, loader_workers=0)
    with torch.no_grad():
        result.classifier.weight.zero_()
        result.classifier.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    assert evaluate_pretrained(result, TINY) == pytest.approx(100 / 3)


# --- the cache ----------------------------------------------------------------------------------


def test_weights_are_cached_with_a_manifest_and_reused(tmp_path):
    path = ensure_pretrained("tiny", str(tmp_path), TINY)
    folder = os.path.dirname(path)
    manifest = json.loads(open(os.path.join(folder, "MANIFEST.json")).read())
    assert manifest["config"]["num_classes"] == 3
    assert sorted(manifest["files"]) == ["model_final.pth", "pretraining.json"]
    stamp = os.stat(path).st_mtime_ns
    assert ensure_pretrained("tiny", str(tmp_path), TINY) == path
    assert os.stat(path).st_mtime_ns == stamp  # reused, not trained again
    state = torch.load(path, weights_only=True)["model"]
    assert all(key.startswith(DETECTRON2_PREFIX) for key in state)
    load_pretrained_backbone(path)  # every backbone parameter, nothing else


@pytest.mark.parametrize("damage", ["truncate_weights", "truncate_manifest", "other_config"])
def test_a_damaged_or_outdated_cache_is_rebuilt_not_loaded(tmp_path, damage):
    path = ensure_pretrained("tiny", str(tmp_path), TINY)
    expected = torch.load(path, weights_only=True)["model"]
    config = TINY
    if damage == "truncate_weights":
        with open(path, "r+b") as f:
            f.truncate(1000)
    elif damage == "truncate_manifest":
        with open(os.path.join(os.path.dirname(path), "MANIFEST.json"), "r+") as f:
            f.truncate(20)
    else:
        config = PretrainingConfig(num_classes=3, steps=2, batch_size=6, validation_crops=6, seed=1)
    rebuilt = ensure_pretrained("tiny", str(tmp_path), config)
    state = torch.load(rebuilt, weights_only=True)["model"]
    same = all(torch.equal(state[k], expected[k]) for k in expected)
    assert same == (damage != "other_config")  # the same config gives the same weights again


def test_a_folder_of_other_files_is_never_overwritten(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        ensure_pretrained("tiny", str(tmp_path), TINY)
    assert (tmp_path / "tiny" / "notes.txt").read_text() == "mine"


def test_exported_weights_load_into_the_benchmark_detector(tmp_path):
    """MODEL.WEIGHTS loads every backbone parameter and nothing unexpected."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    path = ensure_pretrained("tiny", str(tmp_path), TINY)
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.merge_from_file(vos_det.model_zoo.get_config_file("Synthetic/scratch/Base-Synthetic-Scratch.yaml"))
    model = build_model(cfg)
    incompatible = DetectionCheckpointer(model)._load_model(torch.load(path, weights_only=True))
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    assert not [k for k in incompatible.missing_keys if k.startswith(DETECTRON2_PREFIX)]
    expected = torch.load(path, weights_only=True)["model"]
    for key, value in model.state_dict().items():
        if key in expected:
            assert torch.equal(value, expected[key]), key
