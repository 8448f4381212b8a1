"""Box-crop features: the crop geometry, the frozen encoder, its weights, its queues and scores."""

import copy

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from tiny_detection import tiny_cfg
from vos_det import validate_vos_config
from vos_det.modeling.crop_encoder import CropEncoder, square_crop_boxes
from vos_det.pretraining.resnet import DETECTRON2_PREFIX
from vos_det.core.scores import knn_score, mahalanobis_score

CROP_SCORES = ("energy", "crop_mahalanobis", "crop_knn")


@pytest.fixture
def crop_cfg(tiny_datasets, pretrained_weights, tmp_path):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), ENABLED=False, SCORE="crop_mahalanobis")
    cfg.VOS.EVAL.SCORES = CROP_SCORES
    cfg.VOS.CROP_FEATURES.QUEUE_SIZE = 16
    cfg.MODEL.WEIGHTS = pretrained_weights
    return cfg


def test_crop_regions_are_squares_around_the_box_widened_by_the_margin():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 30.0], [0.0, 0.0, 4.0, 8.0]])
    expected = []
    for x0, y0, x1, y1 in boxes.tolist():
        side = max(x1 - x0, y1 - y0) * 1.5
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        expected.append([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
    torch.testing.assert_close(square_crop_boxes(boxes, 0.25), torch.tensor(expected))


def test_an_aligned_box_of_the_crop_size_embeds_exactly_its_pixels(crop_cfg):
    """ROIAlign samples each crop pixel's centre: a box on the pixel grid, as large as the crop,
    is the image slice itself, so the encoder equals the ResNet on that slice."""
    encoder = CropEncoder(crop_cfg, size=16, margin=0.0)
    images = torch.randn(2, 3, 40, 48)
    boxes = [torch.tensor([[4.0, 6.0, 20.0, 22.0]]), torch.tensor([[30.0, 20.0, 46.0, 36.0]])]
    features = encoder(images, boxes)
    slices = torch.stack([images[0, :, 6:22, 4:20], images[1, :, 20:36, 30:46]])
    expected = encoder.backbone(slices)["res5"].mean(dim=(2, 3))
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    assert encoder(images, [torch.zeros(0, 4), torch.zeros(0, 4)]).shape == (0, 512)


def test_the_encoder_is_frozen_and_holds_the_pretrained_resnet(crop_cfg, pretrained_weights):
    encoder = CropEncoder(crop_cfg, 32, 0.15, pretrained_weights)
    encoder.train()
    assert not encoder.training and not encoder.backbone.training
    assert not any(p.requires_grad for p in encoder.parameters())
    pretrained = torch.load(pretrained_weights, weights_only=True)["model"]
    for name, value in encoder.backbone.state_dict().items():
        assert torch.equal(value, pretrained[DETECTRON2_PREFIX + name]), name


def test_weights_without_a_resnet_are_refused_by_name(crop_cfg, tmp_path):
    path = tmp_path / "head_only.pth"
    torch.save({"model": {"roi_heads.box_head.fc1.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ValueError, match=r"cannot take its ResNet from .*head_only.pth: it lacks"):
        CropEncoder(crop_cfg, 32, 0.15, str(path))


def test_a_checkpoint_without_an_encoder_keeps_the_pretrained_one(crop_cfg, tmp_path, caplog):
    model = build_model(crop_cfg)
    encoder_state = copy.deepcopy(model.roi_heads.crop_encoder.state_dict())
    other = {k: v for k, v in model.state_dict().items() if ".crop_encoder." not in k}
    other = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in other.items()}
    torch.save({"model": other}, tmp_path / "no_encoder.pth")
    incompatible = DetectionCheckpointer(model)._load_model(
        torch.load(tmp_path / "no_encoder.pth", weights_only=True)
    )
    assert not [k for k in incompatible.missing_keys if "crop_encoder" in k]
    for name, value in model.roi_heads.crop_encoder.state_dict().items():
        assert torch.equal(value, encoder_state[name]), name
    # A checkpoint with an encoder of its own (a trained VOS model) replaces it.
    saved = {k: torch.randn_like(v) for k, v in model.state_dict().items() if v.is_floating_point()}
    DetectionCheckpointer(model)._load_model({"model": saved})
    key = "roi_heads.crop_encoder.backbone.stem.conv1.weight"
    assert torch.equal(model.state_dict()[key], saved[key])


def _batch(cfg, count: int):
    from detectron2.data import DatasetCatalog, DatasetMapper

    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[:count]]


def test_training_queues_the_crop_features_of_the_ground_truth_boxes(crop_cfg):
    from detectron2.utils.events import EventStorage

    model = build_model(crop_cfg)
    model.train()
    batch = _batch(crop_cfg, 2)
    with EventStorage(0):
        model(batch)
    queues = model.roi_heads.box_predictor.crop_queues
    images = model.preprocess_image(batch)
    targets = [item["instances"] for item in batch]
    expected = model.roi_heads.crop_encoder(images.tensor, [t.gt_boxes.tensor for t in targets])
    labels = torch.cat([t.gt_classes for t in targets])
    assert queues.counts.tolist() == torch.bincount(labels, minlength=3).tolist()
    for label in range(3):
        rows = expected[labels == label]
        torch.testing.assert_close(queues.features[label, : len(rows)], rows)


def test_inference_scores_each_detection_by_its_crop(crop_cfg):
    model = build_model(crop_cfg)
    predictor = model.roi_heads.box_predictor
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    predictor.crop_queues.push(torch.randn(30, 512, generator=generator), labels)
    model.eval()
    batch = _batch(crop_cfg, 2)
    model.roi_heads.test_score_thresh = 0.0  # keep boxes of the untrained model
    with torch.no_grad():
        outputs = model.inference(batch, do_postprocess=False)
        images = model.preprocess_image(batch)
    assert sum(len(o) for o in outputs) > 0
    for index, instances in enumerate(outputs):
        crops = model.roi_heads.crop_encoder(images.tensor[index : index + 1], [instances.pred_boxes.tensor])
        torch.testing.assert_close(
            instances.crop_mahalanobis_scores, mahalanobis_score(crops, predictor.crop_queues)
        )
        torch.testing.assert_close(
            instances.crop_knn_scores, knn_score(crops, predictor.crop_queues, crop_cfg.VOS.KNN_K)
        )
        assert torch.equal(instances.id_scores, instances.crop_mahalanobis_scores)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"MODEL.BACKBONE.NAME": "build_regnet_fpn_backbone"}, "embed crops with a ResNet"),
        ({"MODEL.WEIGHTS": ""}, "pretrained ResNet: set MODEL.WEIGHTS or VOS.CROP_FEATURES.WEIGHTS"),
        ({"VOS.KNN_K": 49}, r"crop_knn needs VOS.KNN_K=49 <= "),
        ({"MODEL.ROI_HEADS.NAME": "StandardROIHeads"}, "VOSROIHeads"),
        ({"VOS.CROP_FEATURES.SIZE": 8}, "VOS.CROP_FEATURES.SIZE=8 must be >= 16"),
        ({"VOS.CROP_FEATURES.MARGIN": -0.1}, "VOS.CROP_FEATURES.MARGIN=-0.1 must be >= 0"),
    ],
)
def test_crop_scores_that_cannot_work_are_refused(crop_cfg, overrides, message):
    crop_cfg.merge_from_list([x for pair in overrides.items() for x in pair])
    with pytest.raises(ValueError, match=message):
        validate_vos_config(crop_cfg)


def test_models_without_crop_scores_have_no_encoder(tiny_datasets, tmp_path):
    model = build_model(tiny_cfg(*tiny_datasets, str(tmp_path)))
    assert model.roi_heads.crop_encoder is None
    assert model.roi_heads.box_predictor.crop_queues is None
    assert not any("crop" in key for key in model.state_dict())
