"""tools/fit_feature_statistics.py: the feature scores for a stock Detectron2 Faster R-CNN."""

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor, default_argument_parser
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import Boxes

from sklearn.metrics import roc_auc_score

from tiny_detection import IMAGE_SIZE, tiny_cfg
from tool_scripts import load_tool
from vos_det.config import load_vos_config
from vos_det.modeling import VOSOutputLayers
from vos_det.utils.weights import load_fitting_weights
from vos_det.core.queues import ClassFeatureQueues
from vos_det.evaluation import EvaluationFolder
from vos_det.evaluation.protocol import keep_boxes

FEATURE_SCORES = ("mahalanobis", "relative_mahalanobis", "knn")
TEST_SIZE = 96  # test-time resizing 64 -> 96: the ground-truth boxes must be scaled by 1.5
QUEUE_SIZE = 64  # more than the training set's boxes of any class: every feature is kept

fit_tool = load_tool("fit_feature_statistics")


def _fitting_cfg(tiny_datasets, ood: str, output: Path):
    """The tiny config with VOSROIHeads, VOS off and the feature scores configured."""
    cfg = tiny_cfg(*tiny_datasets, str(output), ENABLED=False, QUEUE_SIZE=QUEUE_SIZE)
    cfg.VOS.EVAL.SCORES = ("energy", *FEATURE_SCORES)
    cfg.VOS.EVAL.SCORE_THRESHOLD = 0.05
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.01
    cfg.INPUT.MIN_SIZE_TEST = cfg.INPUT.MAX_SIZE_TEST = TEST_SIZE
    cfg.DATASETS.TEST = (tiny_datasets[1], ood)
    return cfg


@pytest.fixture(scope="module")
def fitted(tiny_datasets, tiny_ood_dataset, tmp_path_factory):
    """A stock Detectron2 model (StandardROIHeads) saved by Detectron2's checkpointer, and the
    tool's checkpoint for it: ``(stock state dict, fitting cfg, fitted checkpoint path)``."""
    root = tmp_path_factory.mktemp("fit_statistics")
    stock_cfg = tiny_cfg(*tiny_datasets, str(root))
    stock_cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    torch.manual_seed(0)
    stock = build_model(stock_cfg)
    assert type(stock.roi_heads.box_predictor) is FastRCNNOutputLayers
    DetectionCheckpointer(stock, save_dir=str(root)).save("stock")
    cfg = _fitting_cfg(tiny_datasets, tiny_ood_dataset, root / "fitted")
    config = root / "fit.yaml"
    config.write_text(cfg.dump())
    path = fit_tool.main(
        ["--config-file", str(config), "--output", cfg.OUTPUT_DIR]
        + ["MODEL.WEIGHTS", str(root / "stock.pth")]
    )
    assert path == str(root / "fitted" / "model_with_statistics.pth")
    cfg.MODEL.WEIGHTS = path
    return stock.state_dict(), cfg, path


def _load(cfg):
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


def _ground_truth_features_by_hand(model, dataset: str):
    """Each training image resized to TEST_SIZE, its boxes scaled by hand, pooled through the
    model's box pooler and box head: ``(features (N, D), labels (N,))``."""
    features, labels = [], []
    scale = TEST_SIZE / IMAGE_SIZE
    with torch.no_grad():
        for record in DatasetCatalog.get(dataset):
            image = cv2.imread(record["file_name"])  # BGR, the config's INPUT.FORMAT
            resized = T.ResizeShortestEdge(TEST_SIZE, TEST_SIZE).get_transform(image)
            tensor = torch.as_tensor(resized.apply_image(image).transpose(2, 0, 1).copy())
            images = model.preprocess_image([{"image": tensor}])
            maps = model.backbone(images.tensor)
            boxes = torch.tensor([a["bbox"] for a in record["annotations"]]) * scale
            heads = model.roi_heads
            pooled = heads.box_pooler([maps[f] for f in heads.box_in_features], [Boxes(boxes)])
            features.append(heads.box_head(pooled).flatten(1))
            labels += [a["category_id"] for a in record["annotations"]]
    return torch.cat(features), torch.tensor(labels)


@pytest.mark.slow
def test_fitted_statistics_equal_the_queues_of_the_same_ground_truth_features(
    fitted, tiny_datasets
):
    stock_state, cfg, _ = fitted
    model = _load(cfg)
    state = model.state_dict()
    for key, value in stock_state.items():  # the stock weights, untouched
        assert torch.equal(state[key], value), key
    fitted_queues = model.roi_heads.box_predictor.queues

    features, labels = _ground_truth_features_by_hand(model, tiny_datasets[0])
    direct = ClassFeatureQueues(3, QUEUE_SIZE, features.shape[1], eps=fitted_queues.eps)
    direct.push(features, labels)
    assert fitted_queues.counts.tolist() == direct.counts.tolist()
    assert fitted_queues.counts.tolist() == torch.bincount(labels, minlength=3).tolist()
    torch.testing.assert_close(fitted_queues.class_means(), direct.class_means())
    torch.testing.assert_close(fitted_queues.covariance(), direct.covariance())


def _brute_force_mahalanobis(queues: ClassFeatureQueues, features: np.ndarray) -> np.ndarray:
    """Minus the smallest squared Mahalanobis distance to a class mean, from the queued vectors
    in NumPy (pooled within-class covariance / N + the queues' ridge)."""
    vectors = [queues.features[k, :n].double().numpy() for k, n in enumerate(queues.counts.tolist())]
    means = [v.mean(0) for v in vectors]
    pooled = np.concatenate([v - m for v, m in zip(vectors, means)])
    precision = np.linalg.inv(pooled.T @ pooled / len(pooled) + queues.eps * np.eye(queues.dim))
    return -np.stack([np.einsum("ij,jk,ik->i", features - m, precision, features - m) for m in means], 1).min(1)


@pytest.mark.slow
def test_a_stock_model_with_fitted_statistics_scores_boxes_with_mahalanobis(fitted, monkeypatch):
    _, cfg, _ = fitted
    cfg = cfg.clone()
    cfg.VOS.SCORE = "mahalanobis"
    predictor = DefaultPredictor(cfg)  # as tools/demo.py loads it
    box_predictor = predictor.model.roi_heads.box_predictor
    assert isinstance(box_predictor, VOSOutputLayers)
    seen = {}
    inference = box_predictor.inference

    def recording(predictions, proposals, box_features=None, crop_features=None):
        seen["features"] = box_predictor.classifier_features(box_features).double().numpy()
        return inference(predictions, proposals, box_features, crop_features)

    monkeypatch.setattr(box_predictor, "inference", recording)
    image = cv2.imread(DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[0]["file_name"])
    instances = predictor(image)["instances"]
    assert len(instances) > 0
    for name in FEATURE_SCORES:
        assert torch.isfinite(instances.get(f"{name}_scores")).all(), name
    assert torch.equal(instances.id_scores, instances.mahalanobis_scores)
    # Every detection carries the brute-force score of the proposal it came from.
    proposals = _brute_force_mahalanobis(box_predictor.queues, seen["features"])
    gaps = np.abs(instances.mahalanobis_scores.numpy()[:, None] - proposals[None]).min(axis=1)
    assert gaps.max() < 1e-6 * max(1.0, np.abs(proposals).max())


@pytest.mark.slow
def test_train_net_eval_only_reports_the_feature_scores(fitted, tiny_ood_dataset, tmp_path):
    _, cfg, path = fitted
    config = tmp_path / "eval.yaml"
    evaluation = cfg.clone()
    evaluation.OUTPUT_DIR = str(tmp_path / "eval")
    config.write_text(evaluation.dump())
    args = default_argument_parser().parse_args(
        ["--config-file", str(config), "--eval-only", "MODEL.WEIGHTS", path]
    )
    results = load_tool("train_net").main(args)
    run = EvaluationFolder(str(tmp_path / "eval" / "inference")).read_run()
    threshold, protocol = run.result.threshold.value, run.result.protocol
    kept_id = keep_boxes(run.id_box_scores, threshold, protocol)
    kept_ood = keep_boxes(run.ood_box_scores[tiny_ood_dataset], threshold, protocol)
    labels = np.r_[np.ones(len(kept_id["box"])), np.zeros(len(kept_ood["box"]))]
    for name in FEATURE_SCORES:
        values = np.r_[kept_id[name], kept_ood[name]]
        expected = 100 * roc_auc_score(labels, values)
        assert results[tiny_ood_dataset][name]["AUROC"] == pytest.approx(expected), name


def _usage_error(capsys, config: Path, *arguments: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        fit_tool.main(
            ["--config-file", str(config), "--output", str(config.parent / "out")] + list(arguments)
        )
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def config_and_weights(tiny_datasets, tiny_ood_dataset, tmp_path):
    """A fitting config YAML and a file standing in for the weights."""
    config = tmp_path / "fit.yaml"
    config.write_text(_fitting_cfg(tiny_datasets, tiny_ood_dataset, tmp_path / "out").dump())
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    return config, str(weights)


def test_missing_weights_and_no_training_set_are_usage_errors(config_and_weights, capsys):
    config, weights = config_and_weights
    assert "MODEL.WEIGHTS file not found: " in _usage_error(
        capsys, config, "MODEL.WEIGHTS", weights + ".missing"
    )
    message = _usage_error(capsys, config, "MODEL.WEIGHTS", weights, "DATASETS.TRAIN", "()")
    assert "DATASETS.TRAIN is empty: name the in-distribution training set" in message


def test_a_class_without_boxes_is_a_usage_error(config_and_weights, tiny_datasets, capsys):
    config, weights = config_and_weights
    name = "vos_tiny_train_reds_only"
    if name not in DatasetCatalog.list():
        records = copy.deepcopy(DatasetCatalog.get(tiny_datasets[0]))
        for record in records:
            for annotation in record["annotations"]:
                annotation["category_id"] = 0
        DatasetCatalog.register(name, lambda records=records: records)
        MetadataCatalog.get(name).set(thing_classes=["red", "green", "blue"])
    message = _usage_error(
        capsys, config, "MODEL.WEIGHTS", weights, "DATASETS.TRAIN", f"('{name}',)"
    )
    assert "these classes have fewer than the 2 ground-truth boxes" in message
    assert "green (0), blue (0)" in message


def test_a_model_without_a_feature_score_is_a_usage_error(config_and_weights, capsys):
    config, weights = config_and_weights
    message = _usage_error(
        capsys, config, "MODEL.WEIGHTS", weights, "VOS.EVAL.SCORES", "('energy',)"
    )
    assert "The model has no feature queues to fit" in message


def test_max_images_limits_the_images_whose_boxes_are_counted(config_and_weights, capsys):
    config, weights = config_and_weights
    message = _usage_error(capsys, config, "--max-images", "1", "MODEL.WEIGHTS", weights)
    assert "Among the 1 training images used, these classes have fewer than" in message


@pytest.mark.slow
def test_every_box_per_class_with_crop_queues_and_an_evaluation_config(
    tiny_datasets, tiny_ood_dataset, pretrained_weights, tmp_path
):
    """``--boxes-per-class all``: every ground-truth box of every class, in the box, crop and
    layer queues (each box's crop embedded by the model's encoder, as at test time), and a config.yaml
    that loads the written checkpoint."""
    cfg = _fitting_cfg(tiny_datasets, tiny_ood_dataset, tmp_path / "fitted")
    cfg.VOS.EVAL.SCORES = ("energy", "mahalanobis", "crop_mahalanobis", "layer_mahalanobis")
    cfg.VOS.LAYER_FEATURES.IN_FEATURES = ["p3"]
    cfg.VOS.FEATURE_STATS.COVARIANCE = "ledoit_wolf"
    cfg.VOS.QUEUE_SIZE = cfg.VOS.CROP_FEATURES.QUEUE_SIZE = 4  # fewer than any class has
    cfg.VOS.LAYER_FEATURES.QUEUE_SIZE = 4
    cfg.MODEL.WEIGHTS = pretrained_weights
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("trained")
    config = tmp_path / "fit.yaml"
    config.write_text(cfg.dump())
    path = fit_tool.main(
        ["--config-file", str(config), "--output", cfg.OUTPUT_DIR, "--boxes-per-class", "all"]
        + ["MODEL.WEIGHTS", str(tmp_path / "trained.pth")]
    )
    written = Path(cfg.OUTPUT_DIR) / "config.yaml"
    evaluation = load_vos_config(str(written))
    labels = torch.tensor(
        [a["category_id"] for r in DatasetCatalog.get(tiny_datasets[0]) for a in r["annotations"]]
    )
    counts = torch.bincount(labels, minlength=3)
    assert evaluation.MODEL.WEIGHTS == path
    assert evaluation.VOS.QUEUE_SIZE == evaluation.VOS.CROP_FEATURES.QUEUE_SIZE == counts.max()
    assert evaluation.VOS.LAYER_FEATURES.QUEUE_SIZE == counts.max()
    fitted = build_model(evaluation)
    load_fitting_weights(fitted.eval(), path)  # refuses a checkpoint that does not fit
    predictor = fitted.roi_heads.box_predictor
    assert predictor.queues.covariance_estimator == "ledoit_wolf"
    assert predictor.queues.counts.tolist() == predictor.crop_queues.counts.tolist() == counts.tolist()
    assert fitted.roi_heads.layer_features.queues.counts.tolist() == counts.tolist()
    # The crop queues hold each box's crop feature: the encoder on the test-time resized image.
    scale = TEST_SIZE / IMAGE_SIZE
    expected = {k: [] for k in range(3)}
    with torch.no_grad():
        for record in DatasetCatalog.get(tiny_datasets[0]):
            image = cv2.imread(record["file_name"])
            resized = T.ResizeShortestEdge(TEST_SIZE, TEST_SIZE).get_transform(image)
            tensor = torch.as_tensor(resized.apply_image(image).transpose(2, 0, 1).copy())
            images = fitted.preprocess_image([{"image": tensor}])
            boxes = torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float32)
            rows = fitted.roi_heads.crop_encoder(images.tensor, [boxes * scale])
            for row, annotation in zip(rows, record["annotations"]):
                expected[annotation["category_id"]].append(row)
    for k in range(3):
        torch.testing.assert_close(
            predictor.crop_queues.class_features(k), torch.stack(expected[k]), atol=1e-4, rtol=1e-4
        )


def test_boxes_per_class_must_be_all_or_at_least_two(config_and_weights, capsys):
    config, weights = config_and_weights
    for value in ("1", "most"):
        message = _usage_error(capsys, config, "--boxes-per-class", value, "MODEL.WEIGHTS", weights)
        assert f"'{value}' is neither 'all' nor a number of boxes >= 2" in message
