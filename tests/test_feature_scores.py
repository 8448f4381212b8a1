"""The feature scores (mahalanobis, relative_mahalanobis, knn): values against a NumPy brute
force, the cached factorisations, the vanilla model that fills its queues, config validation."""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

import vos_det
from tiny_detection import tiny_cfg
from vos_det.core import feature_statistics
from vos_det.core.feature_statistics import MissingStatisticsError
from vos_det.engine import VOSTrainer
from vos_det.modeling import VOSOutputLayers
from vos_det.core.queues import ClassFeatureQueues
from vos_det.core.scores import ScoreInputs, compute_scores, get_score

FEATURE_SCORES = ("mahalanobis", "relative_mahalanobis", "knn")


def _filled_queues(seed: int, capacity: int = 6, dim: int = 7):
    """Queues of 5 classes pushed in 3 rounds: one wrapped around, some partial, one with a
    single vector, one empty. Returns (queues, per-class float64 arrays of what they hold)."""
    rng = np.random.default_rng(seed)
    pushes = {0: 2 * capacity + 1, 1: capacity, 2: 3, 3: 1, 4: 0}
    queues = ClassFeatureQueues(len(pushes), capacity, dim, eps=float(rng.uniform(1e-3, 1e-1)))
    pushed = {k: [] for k in pushes}
    labels = np.repeat(list(pushes), list(pushes.values()))
    rng.shuffle(labels)
    for part in np.array_split(labels, 3):
        features = (rng.normal(size=(len(part), dim)) + 2.0 * part[:, None]).astype(np.float32)
        features[:, 0] **= 2  # some anisotropy
        queues.push(torch.from_numpy(features), torch.from_numpy(part).long())
        for label, vector in zip(part, features):
            pushed[label].append(vector.astype(np.float64))
    held = {k: np.array(v[-capacity:]).reshape(-1, dim) for k, v in pushed.items()}
    return queues, held


def _box_features(seed: int, dim: int = 7, rows: int = 9) -> np.ndarray:
    features = np.random.default_rng(seed + 100).normal(size=(rows, dim)) * 3.0
    features[0] = 0.0  # a zero vector: stays zero when L2-normalised
    return features.astype(np.float32).astype(np.float64)


def _brute_force(held, eps: float, x: np.ndarray, k: int):
    """The three scores by explicit loops, matrix inverses and sorting."""
    everything = np.concatenate([v for v in held.values() if len(v)])
    total = len(everything)
    within = np.zeros((x.shape[1], x.shape[1]))
    for vectors in held.values():
        for vector in vectors:
            offset = vector - vectors.mean(0)
            within += np.outer(offset, offset)
    precision = np.linalg.inv(within / total + eps * np.eye(x.shape[1]))
    centred = everything - everything.mean(0)
    agnostic = np.linalg.inv(centred.T @ centred / total + eps * np.eye(x.shape[1]))
    ready = [vectors.mean(0) for vectors in held.values() if len(vectors) >= 2]
    mahalanobis, relative, knn = [], [], []
    units = everything / np.maximum(np.linalg.norm(everything, axis=1, keepdims=True), 1e-12)
    for row in x:
        distances = [(row - mean) @ precision @ (row - mean) for mean in ready]
        agnostic_distance = (row - everything.mean(0)) @ agnostic @ (row - everything.mean(0))
        mahalanobis.append(-min(distances))
        relative.append(-min(d - agnostic_distance for d in distances))
        unit = row / max(np.linalg.norm(row), 1e-12)
        knn.append(-sorted(np.linalg.norm(unit - u) for u in units)[k - 1])
    return {
        "mahalanobis": np.array(mahalanobis),
        "relative_mahalanobis": np.array(relative),
        "knn": np.array(knn),
    }


def _scores(queues, x, k=3, names=FEATURE_SCORES):
    inputs = ScoreInputs(
        torch.zeros(len(x), queues.num_classes),
        box_features=torch.as_tensor(x, dtype=torch.float32),
        queues=queues,
        knn_k=k,
    )
    return compute_scores(names, inputs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 4])
def test_feature_scores_match_numpy_brute_force(seed, k):
    queues, held = _filled_queues(seed)
    assert queues.counts.tolist() == [len(held[c]) for c in range(5)] == [6, 6, 3, 1, 0]
    x = _box_features(seed)
    expected = _brute_force(held, queues.eps, x, k)
    got = _scores(queues, x, k)
    for name in FEATURE_SCORES:
        assert got[name].dtype == torch.float64
        # The Gaussians are float64; the neighbour search float32 (unit vectors: ~1e-6).
        tolerance = 2e-6 if name == "knn" else 1e-9
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=tolerance, atol=tolerance)
        low, high = get_score(name).value_range
        assert bool(((got[name] >= low) & (got[name] <= high)).all()), name


def test_feature_scores_of_no_boxes_are_empty():
    queues, _ = _filled_queues(0)
    for values in _scores(queues, np.zeros((0, 7))).values():
        assert values.shape == (0,)


def test_empty_queues_and_too_few_vectors_say_how_to_fill_them():
    queues = ClassFeatureQueues(3, 4, 5)
    with pytest.raises(MissingStatisticsError, match="no class's feature queue holds 2 vectors"):
        _scores(queues, np.ones((2, 5)), names=["mahalanobis"])
    queues.push(torch.randn(3, 5), torch.tensor([0, 0, 1]))
    assert torch.isfinite(
        _scores(queues, np.ones((2, 5)), names=["mahalanobis"])["mahalanobis"]
    ).all()
    with pytest.raises(
        MissingStatisticsError, match="k=4 queued feature vectors, but the queues hold 3"
    ):
        _scores(queues, np.ones((2, 5)), k=4, names=["knn"])


def _count_builds(monkeypatch):
    """Count the constructions of both statistics classes."""
    builds = {"gaussian": 0, "bank": 0}
    for key, cls in (
        ("gaussian", feature_statistics.GaussianFeatureStatistics),
        ("bank", feature_statistics.NormalizedFeatureBank),
    ):

        def counting(self, queues, _init=cls.__init__, _key=key):
            builds[_key] += 1
            _init(self, queues)

        monkeypatch.setattr(cls, "__init__", counting)
    return builds


def test_factorisations_are_cached_until_the_queues_change(monkeypatch):
    queues, _ = _filled_queues(0)
    other, _ = _filled_queues(1)
    other.eps = queues.eps  # the ridge is a setting of the model, not part of the state
    x = _box_features(0)
    builds = _count_builds(monkeypatch)
    cholesky_calls = []
    factorise = feature_statistics.robust_cholesky
    monkeypatch.setattr(
        feature_statistics,
        "robust_cholesky",
        lambda *args, **kwargs: cholesky_calls.append(1) or factorise(*args, **kwargs),
    )

    first = _scores(queues, x)
    second = _scores(queues, x[:4])  # another call, other boxes, no push
    assert builds == {"gaussian": 1, "bank": 1} and len(cholesky_calls) == 1
    for name in FEATURE_SCORES:
        torch.testing.assert_close(second[name], first[name][:4], rtol=1e-12, atol=1e-12)

    queues.push(torch.randn(2, 7), torch.tensor([3, 4]))
    after_push = _scores(queues, x)
    assert builds == {"gaussian": 2, "bank": 2} and len(cholesky_calls) == 2
    assert not torch.equal(after_push["mahalanobis"], first["mahalanobis"])

    queues.load_state_dict(other.state_dict())  # e.g. a checkpoint: same shape, other contents
    loaded = _scores(queues, x)
    assert builds == {"gaussian": 3, "bank": 3}
    for name, values in _scores(other, x).items():
        torch.testing.assert_close(loaded[name], values, rtol=1e-12, atol=1e-12)


def test_a_vanilla_predictor_keeps_queues_only_for_a_feature_score():
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.VOS.ENABLED = False
    cfg.MODEL.ROI_HEADS.NAME = "VOSROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    assert VOSOutputLayers(cfg, ShapeSpec(channels=16)).queues is None
    cfg.VOS.EVAL.SCORES = ("energy", "knn")
    predictor = VOSOutputLayers(cfg, ShapeSpec(channels=16))
    assert predictor.queues.dim == 16 and predictor.knn_k == cfg.VOS.KNN_K
    assert not any(p.requires_grad for p in predictor.uncertainty.parameters())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"VOS.EVAL.SCORES": ("energy", "mahalanobis")},
            r"VOS.EVAL.SCORES=\('energy', 'mahalanobis'\): mahalanobis read\(s\) the per-class "
            r"feature queues, which MODEL.ROI_HEADS.NAME='StandardROIHeads' does not have: set "
            r"MODEL.ROI_HEADS.NAME 'VOSROIHeads'",
        ),
        ({"VOS.SCORE": "knn"}, r"VOS.SCORE='knn': knn read\(s\) the per-class feature queues"),
    ],
)
def test_a_feature_score_without_queues_is_rejected_naming_the_key(overrides, message):
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    with pytest.raises(ValueError, match=message):
        vos_det.validate_vos_config(cfg)
    cfg.MODEL.ROI_HEADS.NAME = "VOSROIHeads"
    vos_det.validate_vos_config(cfg)


@pytest.mark.parametrize(
    "knn_k, scores, message",
    [
        (0, ("energy",), "VOS.KNN_K=0 must be >= 1"),
        (25, ("energy", "knn"), "VOS.KNN_K=25 exceeds the 24 vectors the feature queues can hold"),
    ],
)
def test_invalid_knn_k_is_rejected(knn_k, scores, message):
    cfg = get_cfg()
    vos_det.add_vos_config(cfg)
    cfg.MODEL.ROI_HEADS.NAME = "VOSROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.VOS.QUEUE_SIZE = 8
    cfg.VOS.KNN_K = knn_k
    cfg.VOS.EVAL.SCORES = scores
    with pytest.raises(ValueError, match=message):
        vos_det.validate_vos_config(cfg)


@pytest.mark.slow
def test_vanilla_model_with_a_feature_score_fills_its_queues_without_uncertainty_loss(
    tiny_datasets, tmp_path
):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), ENABLED=False, KNN_K=3)
    cfg.VOS.EVAL.SCORES = ("energy", *FEATURE_SCORES)
    cfg.SOLVER.MAX_ITER = 3
    trainer = VOSTrainer(cfg)
    trainer.train()  # evaluates the tiny test set afterwards, with the feature scores
    model = trainer.model
    predictor = model.roi_heads.box_predictor
    assert int(predictor.queues.counts.sum()) > 0 and int(predictor.queues.num_pushes) == 3
    assert not any(p.requires_grad for p in predictor.uncertainty.parameters())
    histories = trainer.storage.histories()
    assert "loss_uncertainty" not in histories and "vos/queue_fill_mean" in histories

    model.eval()
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        instances = model([{"image": image, "height": 64, "width": 64}])[0]["instances"]
    assert len(instances) > 0
    for name in FEATURE_SCORES:
        assert torch.isfinite(instances.get(f"{name}_scores")).all(), name
