"""Layer-feature scores: the stages backbone, ROI pooling of named layers, their queues, the
standardised combined distance and the config checks."""

import copy

import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from tiny_detection import tiny_cfg
from vos_det import validate_vos_config
from vos_det.core.feature_statistics import MissingStatisticsError
from vos_det.core.layer_statistics import LayerFeatureQueues
from vos_det.core.queues import ClassFeatureQueues
from vos_det.core.scores import ScoreInputs, compute_scores
from vos_det.engine.fit_statistics import (
    fit_feature_statistics,
    fitted_queues,
    ground_truth_layer_features,
)
from vos_det.modeling.detection_scores import check_score_statistics

LAYERS = ("res4", "p3")
SCORES = ("energy", "layer_mahalanobis", "layer_mahalanobis_res4", "layer_mahalanobis_p3")


@pytest.fixture
def layer_cfg(tiny_datasets, tmp_path):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), ENABLED=False, SCORE="layer_mahalanobis")
    cfg.VOS.EVAL.SCORES = SCORES
    cfg.VOS.LAYER_FEATURES.IN_FEATURES = list(LAYERS)
    cfg.VOS.LAYER_FEATURES.QUEUE_SIZE = 16
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_stages_backbone"
    return cfg


def _batch(cfg, count: int):
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[:count]]


def _brute_force_min_distance(queues: ClassFeatureQueues, features: torch.Tensor) -> torch.Tensor:
    """Smallest squared Mahalanobis distance to a class mean, with an explicit inverse of the
    pooled within-class covariance plus the ridge."""
    classes = [queues.class_features(k).double() for k in range(queues.num_classes)]
    classes = [c for c in classes if len(c) >= 2]
    centred = torch.cat([c - c.mean(0) for c in classes])
    covariance = centred.T @ centred / len(centred) + queues.eps * torch.eye(queues.dim)
    inverse = torch.linalg.inv(covariance.double())
    x = features.double()
    distances = [((x - c.mean(0)) @ inverse * (x - c.mean(0))).sum(1) for c in classes]
    return torch.stack(distances, 1).amin(1)


def test_the_stages_backbone_adds_the_resnet_stages_to_the_fpn_levels(layer_cfg):
    model = build_model(layer_cfg)
    shapes = model.backbone.output_shape()
    assert {"p2", "p3", "p4", "p5", "p6", "res2", "res3", "res4", "res5"} <= set(shapes)
    assert shapes["res4"].stride == 16 and shapes["res4"].channels == 256
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outputs = model.backbone(images)
        stages = model.backbone.bottom_up(images)
        plain = super(type(model.backbone), model.backbone).forward(images)
    for name in ("res2", "res5"):
        torch.testing.assert_close(outputs[name], stages[name])
    torch.testing.assert_close(outputs["p3"], plain["p3"])
    # The same weights as Detectron2's own ResNet-FPN: no key changes.
    stock_cfg = layer_cfg.clone()
    stock_cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    stock_cfg.VOS.EVAL.SCORES = ("energy", "layer_mahalanobis_p3")
    stock_cfg.VOS.LAYER_FEATURES.IN_FEATURES = ["p3"]
    assert set(build_model(stock_cfg).backbone.state_dict()) == set(model.backbone.state_dict())


def test_pooling_averages_each_layer_over_the_box(layer_cfg):
    """On maps linear in the image coordinates (cell (i, j) of a stride-s map sits at
    ((j + 0.5) s, (i + 0.5) s)), bilinear samples reproduce the linear function, and their mean
    over a symmetric grid is its value at the box centre."""
    model = build_model(layer_cfg)
    layers = model.roi_heads.layer_features
    generator = torch.Generator().manual_seed(0)
    features, coefficients = {}, {}
    for name, stride, channels in (("res4", 16, 256), ("p3", 8, 32)):
        size = 64 // stride
        centres = (torch.arange(size) + 0.5) * stride
        a, b, c = torch.randn(3, channels, 1, 1, generator=generator)
        maps = a + b * centres[None, None, :] + c * centres[None, :, None]
        features[name] = torch.stack([maps, 2 * maps])  # two images
        coefficients[name] = (a.flatten(), b.flatten(), c.flatten())
    boxes = [torch.tensor([[18.0, 20.0, 40.0, 30.0]]), torch.tensor([[12.0, 14.0, 44.0, 50.0]])]
    pooled = layers(features, boxes)
    for name, (a, b, c) in coefficients.items():
        for image, box in enumerate(boxes):
            cx, cy = float(box[0, 0] + box[0, 2]) / 2, float(box[0, 1] + box[0, 3]) / 2
            expected = (image + 1) * (a + b * cx + c * cy)
            torch.testing.assert_close(pooled[name][image], expected, rtol=1e-4, atol=1e-4)


def test_combined_distance_sums_the_standardised_layer_distances():
    generator = torch.Generator().manual_seed(0)
    queues = LayerFeatureQueues(3, 20, {"a": 4, "b": 6}, eps=1e-3)
    labels = torch.arange(45) % 3
    queues.push({"a": torch.randn(45, 4, generator=generator), "b": 5 * torch.randn(45, 6, generator=generator)}, labels)
    features = {"a": torch.randn(7, 4, generator=generator), "b": torch.randn(7, 6, generator=generator)}
    expected = 0
    for name in ("a", "b"):
        layer = queues.layers[name]
        reference = _brute_force_min_distance(layer, layer.queued_features())
        distance = _brute_force_min_distance(layer, features[name])
        torch.testing.assert_close(queues.distances(features)[name], distance)
        expected = expected + (distance - reference.mean()) / reference.std(unbiased=False)
    torch.testing.assert_close(queues.combined_distance(features), expected)
    inputs = ScoreInputs(fg_logits=torch.zeros(7, 3), layer_features=features, layer_queues=queues)
    with pytest.raises(MissingStatisticsError, match=r"layer\(s\) \['res4'\]"):
        compute_scores(["layer_mahalanobis_res4"], inputs)
    scores = compute_scores(["layer_mahalanobis"], inputs)
    torch.testing.assert_close(scores["layer_mahalanobis"], -expected)


def test_training_queues_the_layer_features_of_the_ground_truth_boxes(layer_cfg):
    model = build_model(layer_cfg)
    model.train()
    batch = _batch(layer_cfg, 2)
    with EventStorage(0):
        model(batch)
    model.eval()
    images = model.preprocess_image(batch)
    targets = [item["instances"] for item in batch]
    with torch.no_grad():
        expected = model.roi_heads.layer_features(
            model.backbone(images.tensor), [t.gt_boxes.tensor for t in targets]
        )
    labels = torch.cat([t.gt_classes for t in targets])
    queues = model.roi_heads.layer_features.queues
    assert queues.counts.tolist() == torch.bincount(labels, minlength=3).tolist()
    for name in LAYERS:
        for label in range(3):
            rows = expected[name][labels == label]
            # Training ran the backbone in train mode (GN: no difference) on the same images.
            torch.testing.assert_close(queues.layers[name].features[label, : len(rows)], rows, rtol=1e-4, atol=1e-4)


def test_inference_scores_each_detection_by_its_layer_features(layer_cfg):
    model = build_model(layer_cfg)
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    queues = model.roi_heads.layer_features.queues
    queues.push({"res4": torch.randn(30, 256, generator=generator), "p3": torch.randn(30, 32, generator=generator)}, labels)
    check_score_statistics(model.roi_heads, SCORES)
    model.eval()
    model.roi_heads.test_score_thresh = 0.0
    batch = _batch(layer_cfg, 2)
    with torch.no_grad():
        outputs = model.inference(batch, do_postprocess=False)
        images = model.preprocess_image(batch)
        maps = model.backbone(images.tensor)
    assert sum(len(o) for o in outputs) > 0
    for index, instances in enumerate(outputs):
        pooled = model.roi_heads.layer_features(
            {k: v[index : index + 1] for k, v in maps.items()}, [instances.pred_boxes.tensor]
        )
        torch.testing.assert_close(instances.layer_mahalanobis_scores, -queues.combined_distance(pooled))
        torch.testing.assert_close(
            instances.layer_mahalanobis_res4_scores, -queues.distances(pooled)["res4"]
        )
        assert torch.equal(instances.id_scores, instances.layer_mahalanobis_scores)


def test_missing_layer_statistics_are_refused_before_any_image(layer_cfg):
    model = build_model(layer_cfg)
    with pytest.raises(MissingStatisticsError, match="layer-feature queues hold"):
        check_score_statistics(model.roi_heads, SCORES)


def test_fitting_fills_the_layer_queues_from_the_ground_truth(layer_cfg):
    layer_cfg.VOS.EVAL.SCORES = SCORES + ("mahalanobis",)
    model = build_model(layer_cfg)
    batch = _batch(layer_cfg, 3)
    pushed = fit_feature_statistics(model, [batch[:2], batch[2:]], capacity=40, progress=False)
    queues = model.roi_heads.layer_features.queues
    assert queues.layers["res4"].capacity == 40
    assert queues.counts.tolist() == pushed.tolist()
    model.eval()
    expected = torch.cat([ground_truth_layer_features(model, b)["p3"] for b in (batch[:2], batch[2:])])
    labels = torch.cat([item["instances"].gt_classes for item in batch])
    for label in range(3):
        rows = expected[labels == label]
        torch.testing.assert_close(queues.layers["p3"].features[label, : len(rows)], rows)


def test_a_model_with_layer_scores_alone_is_fitted(layer_cfg):
    """No box-feature score: only the layer queues exist, and they are the ones fitted."""
    model = build_model(layer_cfg)
    assert model.roi_heads.box_predictor.queues is None
    assert list(fitted_queues(model)) == ["res4 features", "p3 features"]
    batch = _batch(layer_cfg, 2)
    pushed = fit_feature_statistics(model, [batch], progress=False)
    labels = torch.cat([item["instances"].gt_classes for item in batch])
    assert pushed.tolist() == torch.bincount(labels, minlength=3).tolist()
    assert model.roi_heads.layer_features.queues.counts.tolist() == pushed.tolist()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"VOS.EVAL.SCORES": ("energy", "layer_mahalanobis_res5")}, r"reads the layer 'res5'"),
        ({"MODEL.ROI_HEADS.NAME": "StandardROIHeads"}, "need MODEL.ROI_HEADS.NAME 'VOSROIHeads'"),
    ],
)
def test_layer_scores_that_cannot_work_are_refused(layer_cfg, overrides, message):
    layer_cfg.merge_from_list([x for pair in overrides.items() for x in pair])
    with pytest.raises(ValueError, match=message):
        validate_vos_config(layer_cfg)


def test_a_layer_the_backbone_does_not_output_is_named(layer_cfg):
    layer_cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    with pytest.raises(ValueError, match=r"no output \['res4'\].*build_resnet_fpn_stages_backbone"):
        build_model(layer_cfg)


def test_models_without_layer_scores_pool_no_layer(tiny_datasets, tmp_path):
    model = build_model(tiny_cfg(*tiny_datasets, str(tmp_path)))
    assert model.roi_heads.layer_features is None
    assert not any("layer_features" in key for key in model.state_dict())
