"""VOS for image classifiers (vos_det.classification): the wrapper's shapes, losses, queues and
scores against brute-force references, the embedded benchmark, and seeded reproducibility."""

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vos_det.classification import (
    CLASSIFIER_SCORES,
    ClassificationBenchmarkSpec,
    SmallCNN,
    TrainingConfig,
    VOSClassifier,
    VOSClassifierConfig,
    build_classifier,
    evaluate_classifier,
    generate_classification_benchmark,
    load_split,
    render_classification_image,
    score_grid,
    train_classifier,
)
from vos_det.core import outlier_synthesis as synthesis_module
from vos_det.pretraining.trainer import normalize_rgb

PACKAGE = Path(__file__).resolve().parents[1] / "vos_det"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _imports(path: Path):
    """(imports Detectron2?, vos_det module files it imports relatively) of a module file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    detectron2, local = False, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            detectron2 |= any(a.name.split(".")[0] == "detectron2" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                detectron2 |= (node.module or "").split(".")[0] == "detectron2"
                continue
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            parts = (node.module or "").split(".") if node.module else []
            target = base.joinpath(*parts)
            names = [target / f"{a.name}.py" for a in node.names] + [target.with_suffix(".py")]
            local |= {name for name in names if name.is_file()}
    return detectron2, local


def test_classification_modules_and_the_core_they_import_do_not_import_detectron2():
    modules = sorted((PACKAGE / "classification").glob("*.py"))
    assert {m.name for m in modules} >= {"model.py", "data.py", "training.py", "figure.py"}
    seen, pending, offenders = set(), list(modules), []
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        detectron2, local = _imports(path)
        if detectron2:
            offenders.append(path)
        pending += sorted(local - seen)
    assert PACKAGE / "core" / "queues.py" in seen and PACKAGE / "core" / "scores.py" in seen
    assert PACKAGE / "core" / "virtual_outliers.py" in seen and PACKAGE / "core" / "energy.py" in seen
    assert offenders == []


def test_config_validation_names_the_field():
    for field, value in [
        ("bottleneck_dim", 0),
        ("queue_size", 1),
        ("start_iter", -1),
        ("loss_weight", -0.1),
        ("num_select", 0),
        ("min_queue_fill", 0),
    ]:
        with pytest.raises(ValueError, match=field):
            VOSClassifierConfig(**{field: value})
    with pytest.raises(ValueError, match="Unknown score 'nope'"):
        VOSClassifierConfig(scores=("energy", "nope"))
    with pytest.raises(ValueError, match="epochs"):
        TrainingConfig(epochs=0)


def _linear_model(dim=4, classes=3, **config) -> VOSClassifier:
    """A wrapper on an identity backbone: it takes [N, 6] features."""
    torch.manual_seed(0)
    config = {"bottleneck_dim": dim, "queue_size": 5, "num_candidates": 50, **config}
    return VOSClassifier(nn.Identity(), 6, classes, VOSClassifierConfig(**config))


def test_forward_shapes_on_images_and_on_features():
    model = VOSClassifier(SmallCNN(4), 16, 3, VOSClassifierConfig(bottleneck_dim=8))
    logits, features = model(torch.rand(5, 3, 32, 32))
    assert logits.shape == (5, 3) and features.shape == (5, 8)
    logits, features = _linear_model(dim=7)(torch.randn(2, 6))
    assert logits.shape == (2, 3) and features.shape == (2, 7)
    assert bool((features >= 0).all())  # the bottleneck's ReLU


class _RecordingSampler:
    """Wraps the sampler, recording its inputs and outputs."""

    def __init__(self, sampler):
        self.sampler, self.calls = sampler, []

    def __call__(self, means, cov, num_candidates, num_select, **kwargs):
        outliers, labels = self.sampler(means, cov, num_candidates, num_select, **kwargs)
        self.calls.append((means, cov, outliers))
        return outliers, labels


def test_uncertainty_loss_is_zero_before_start_and_matches_a_brute_force_loss_after(
    monkeypatch,
):
    sampler = _RecordingSampler(synthesis_module.sample_virtual_outliers)
    monkeypatch.setattr(synthesis_module, "sample_virtual_outliers", sampler)
    model = _linear_model(start_iter=2, loss_weight=0.3)
    labels = torch.tensor([0, 1, 2] * 5)
    inputs = torch.randn(15, 6)
    for iteration in range(2):  # queues full after the first push, but before START
        losses = model.losses(*model(inputs), labels, iteration)
        assert set(losses) == {"loss_cls", "loss_uncertainty"}
        assert losses["loss_uncertainty"].item() == 0.0
    assert sampler.calls == []
    logits, features = model(inputs)
    losses = model.losses(logits, features, labels, 2)
    assert len(sampler.calls) == 1
    means, cov, outliers = sampler.calls[0]
    # The sampler gets the class means and the pooled covariance (+ ridge) of the queued vectors.
    queued = [model.queues.class_features(k).double() for k in range(3)]
    torch.testing.assert_close(means, torch.stack([q.mean(0) for q in queued]))
    centred = torch.cat([q - q.mean(0) for q in queued])
    expected_cov = centred.T @ centred / len(centred) + 1e-4 * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(cov, expected_cov)
    # Brute force: energy -logsumexp (weights 1), logistic = identity at initialisation.
    id_logit = torch.logsumexp(logits, 1)
    ood_logit = torch.logsumexp(model.classifier(outliers), 1)
    expected = F.binary_cross_entropy_with_logits(
        torch.cat([id_logit, ood_logit]), torch.cat([torch.ones(15), torch.zeros(3)])
    )
    assert losses["loss_uncertainty"].item() > 0
    torch.testing.assert_close(losses["loss_uncertainty"], 0.3 * expected)
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(logits, labels))


def test_no_sampling_while_no_queue_is_ready_nor_with_loss_weight_zero(monkeypatch):
    sampler = _RecordingSampler(synthesis_module.sample_virtual_outliers)
    monkeypatch.setattr(synthesis_module, "sample_virtual_outliers", sampler)
    model = _linear_model(start_iter=0)
    labels = torch.tensor([0, 1, 2, 0])
    losses = model.losses(*model(torch.randn(4, 6)), labels, 10)  # queues hold 2, 1, 1 of 5
    assert losses["loss_uncertainty"].item() == 0.0
    vanilla = _linear_model(start_iter=0, loss_weight=0.0)
    for iteration in range(3):
        losses = vanilla.losses(*vanilla(torch.randn(9, 6)), torch.arange(9) % 3, iteration)
        assert losses["loss_uncertainty"].item() == 0.0
    assert vanilla.queues.all_ready()  # the queues fill anyway (the feature scores read them)
    assert sampler.calls == []
    # min_queue_fill: the ready classes alone get outliers.
    partial = _linear_model(start_iter=0, min_queue_fill=2)
    partial.losses(*partial(torch.randn(4, 6)), labels, 0)
    assert len(sampler.calls) == 1 and sampler.calls[0][2].shape == (1, 4)


def test_queues_fill_with_the_features_of_each_label():
    model = _linear_model(start_iter=100)
    pushed = {k: [] for k in range(3)}
    generator = torch.Generator().manual_seed(1)
    for iteration in range(4):
        labels = torch.randint(0, 3, (7,), generator=generator)
        logits, features = model(torch.randn(7, 6, generator=generator))
        model.losses(logits, features, labels, iteration)
        for feature, label in zip(features.detach(), labels.tolist()):
            pushed[label].append(feature)
    for k in range(3):
        expected = torch.stack(pushed[k][-5:])  # the queue keeps the last Q = 5
        torch.testing.assert_close(model.queues.class_features(k), expected)


def _brute_force_scores(model: VOSClassifier, logits: Tensor, features: Tensor) -> dict:
    """Every classifier score from its definition, in NumPy float64 on the queues' raw contents
    (no shared code with the score registry or the queue statistics)."""
    z = logits.double().numpy()
    x = features.double().numpy()
    queues = model.queues
    counts = queues.counts.tolist()
    vectors = [queues.features[k, :n].double().numpy() for k, n in enumerate(counts)]
    means = [v.mean(0) for v in vectors]
    pooled = np.concatenate([v - m for v, m in zip(vectors, means)])
    covariance = pooled.T @ pooled / len(pooled) + model.config.cov_eps * np.eye(x.shape[1])
    precision = np.linalg.inv(covariance)
    distances = np.stack([np.einsum("ij,jk,ik->i", x - m, precision, x - m) for m in means], 1)
    everything = np.concatenate(vectors)
    total = everything - everything.mean(0)
    agnostic = np.linalg.inv(total.T @ total / len(total) + model.config.cov_eps * np.eye(x.shape[1]))
    centred = x - everything.mean(0)
    agnostic_distance = np.einsum("ij,jk,ik->i", centred, agnostic, centred)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # 0 stays 0
    bank = everything / np.maximum(np.linalg.norm(everything, axis=1, keepdims=True), 1e-12)
    knn = np.sort(np.linalg.norm(unit[:, None] - bank[None], axis=2), axis=1)[:, model.config.knn_k - 1]
    weights = np.maximum(model.uncertainty.energy_weights.detach().double().numpy(), 0)
    energy = -np.log((weights * np.exp(z)).sum(1))
    layer = model.uncertainty.logistic
    vos_logit = -energy * layer.weight.item() + layer.bias.item()
    softmax = np.exp(z - z.max(1, keepdims=True))
    return {
        "vos": 1 / (1 + np.exp(-vos_logit)),
        "energy": np.log(np.exp(z).sum(1)),
        "msp": (softmax / softmax.sum(1, keepdims=True)).max(1),
        "max_logit": z.max(1),
        "mahalanobis": -distances.min(1),
        "relative_mahalanobis": -(distances - agnostic_distance[:, None]).min(1),
        "knn": -knn,
    }


def test_every_score_equals_its_brute_force_definition():
    model = _linear_model(dim=3, knn_k=4)
    for iteration in range(3):
        model.losses(*model(torch.randn(30, 6)), torch.arange(30) % 3, iteration)
    with torch.no_grad():
        model.uncertainty.energy_weights.copy_(torch.tensor([0.5, 1.5, 1.0]))
        logits, features = model(torch.randn(40, 6) * 3)
    scores = model.scores(logits, features)
    assert tuple(scores) == CLASSIFIER_SCORES
    expected = _brute_force_scores(model, logits, features)
    for name, values in scores.items():
        np.testing.assert_allclose(values.double().numpy(), expected[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_benchmark_is_generated_once_and_balanced(tmp_path):
    spec = ClassificationBenchmarkSpec(num_train=9, num_test=8, image_size=24, seed=3)
    root = generate_classification_benchmark(str(tmp_path / "bench"), spec)
    stamp = os.stat(os.path.join(root, "train.npz")).st_mtime_ns
    assert generate_classification_benchmark(root, spec) == root
    assert os.stat(os.path.join(root, "train.npz")).st_mtime_ns == stamp  # reused
    images, labels = load_split(root, "train")
    assert images.shape == (9, 3, 24, 24) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert np.bincount(labels.numpy()).tolist() == [3, 3, 3]
    assert load_split(root, "ood_near")[1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert load_split(root, "ood_far")[1].tolist() == [-1] * 8
    with pytest.raises(ValueError, match="num_test"):
        ClassificationBenchmarkSpec(num_test=0)
    with pytest.raises(ValueError, match="Unknown split"):
        load_split(root, "val")


def test_a_shape_changes_the_image_only_where_it_is_drawn():
    background = render_classification_image(np.random.default_rng(5), None, 32)
    with_shape = render_classification_image(np.random.default_rng(5), "star", 32)
    changed = (background != with_shape).any(axis=2)
    assert 0.05 < changed.mean() < 0.6  # a star of radius 25-45% of the side
    colours = np.unique(with_shape[changed], axis=0)
    assert len(colours) == 1  # one flat fill colour


def test_score_grid_frames_kept_images_green_and_flagged_ones_red():
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    picture = score_grid([("id", images, np.array([0.9, 0.2, 0.5]))], threshold=0.5, scale=2)
    tile_w = 8 * 2 + 6
    assert picture.shape[1] == 3 * tile_w
    frame_y = 20 + 1
    colours = [tuple(picture[frame_y, i * tile_w + 1]) for i in range(3)]
    assert colours == [(40, 170, 60), (215, 40, 40), (40, 170, 60)]


def _train_tiny(seed: int):
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(24, 3, 16, 16, generator=generator), torch.arange(24) % 3
    config = VOSClassifierConfig(bottleneck_dim=4, queue_size=4, start_iter=2, num_candidates=50)
    model = build_classifier(3, config, seed, width=2)
    history = train_classifier(
        model, images, labels, TrainingConfig(epochs=2, batch_size=8, seed=seed)
    )
    metrics, _ = evaluate_classifier(model, images[:9], labels[:9], {"ood": images[9:]})
    return model, history, metrics


def test_a_seed_gives_identical_results_twice():
    model_a, history_a, metrics_a = _train_tiny(seed=4)
    model_b, history_b, metrics_b = _train_tiny(seed=4)
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key
    strip = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history_a]
    assert strip == [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history_b]
    assert history_a[-1]["loss_uncertainty"] > 0  # VOS was on in the second epoch
    assert metrics_a == metrics_b
    assert set(metrics_a["ood"]["ood"]) == set(CLASSIFIER_SCORES)
    assert set(metrics_a["ood"]["ood"]["vos"]) == {"FPR95", "AUROC", "AUPR"}
    _, history_c, _ = _train_tiny(seed=5)
    assert history_c[0]["loss_cls"] != history_a[0]["loss_cls"]


def test_a_frozen_pretrained_backbone_keeps_its_weights_while_the_heads_train(pretrained_weights):
    from vos_det.classification import PretrainedResNet
    from vos_det.pretraining.weights import load_pretrained_backbone

    backbone = PretrainedResNet(load_pretrained_backbone(pretrained_weights), frozen=True)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = build_classifier(3, VOSClassifierConfig(bottleneck_dim=8, queue_size=4), 0, backbone=backbone)
    assert model.backbone is backbone and backbone.out_features == 512
    heads = {k: v.clone() for k, v in model.bottleneck.state_dict().items()}
    images, labels = torch.rand(12, 3, 32, 32), torch.arange(12) % 3
    train_classifier(model, images, labels, TrainingConfig(epochs=1, batch_size=6))
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not torch.equal(model.bottleneck.state_dict()["0.weight"], heads["0.weight"])
    with torch.no_grad():  # the backbone reads RGB in [0, 1] normalised as in pretraining
        expected = backbone.resnet.pooled(normalize_rgb(images[:2]))
    torch.testing.assert_close(backbone(images[:2]), expected)


def test_feature_scores_before_training_say_how_a_classifier_fills_its_queues():
    """The README's snippet scores an untrained classifier: the message is the classifier's."""
    model = build_classifier(3, VOSClassifierConfig(bottleneck_dim=4, queue_size=8), 0, width=4)
    logits, features = model(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"VOSClassifier's queues fill in training.*names="):
        model.scores(logits, features)
    assert sorted(model.scores(logits, features, names=("energy", "msp"))) == ["energy", "msp"]


def _separable_toy(count: int, seed: int):
    """Images whose class is the one colour channel that is bright: easy to learn."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    images = torch.rand(count, 3, 16, 16, generator=generator) * 0.3
    images[torch.arange(count), labels] += 0.7
    return images, labels


def test_training_learns_a_separable_toy_and_evaluation_matches_scikit_learn():
    """A missing optimiser step, or ID and OOD swapped in the evaluation, fail here."""
    from sklearn.metrics import roc_auc_score

    images, labels = _separable_toy(96, 0)
    config = VOSClassifierConfig(bottleneck_dim=8, queue_size=16, num_candidates=50, loss_weight=0.0)
    model = build_classifier(3, config, seed=0, width=4)
    history = train_classifier(model, images, labels, TrainingConfig(epochs=10, batch_size=16, learning_rate=0.05))
    assert history[-1]["loss_cls"] < 0.5 * history[0]["loss_cls"]
    test_images, test_labels = _separable_toy(30, 1)
    ood = torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(2))  # no bright channel
    metrics, scores = evaluate_classifier(model, test_images, test_labels, {"near": ood})
    assert metrics["accuracy"] > 60.0  # chance: 33%
    with torch.no_grad():
        model.eval()
        expected_id = model.scores(*model(test_images))
        expected_ood = model.scores(*model(ood))
    for name in ("energy", "mahalanobis"):
        truth = np.r_[np.ones(30), np.zeros(20)]
        values = np.r_[expected_id[name].numpy(), expected_ood[name].numpy()]
        assert metrics["ood"]["near"][name]["AUROC"] == pytest.approx(100 * roc_auc_score(truth, values))
        np.testing.assert_allclose(scores["near"][name], expected_ood[name].double().numpy())
