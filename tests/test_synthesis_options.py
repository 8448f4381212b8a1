"""The synthesis options of VOS's successors: the MLP energy head, FEVER-OOD's projection and
singular-value penalty, the feature-space head, boundary synthesis, and the training
diagnostics."""

import math

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from sklearn.metrics import log_loss, roc_auc_score
from tiny_detection import tiny_cfg

from vos_det.core.energy import EnergyUncertaintyHead
from vos_det.engine import VOSTrainer
from vos_det.engine.fit_statistics import ground_truth_box_features
from vos_det.core.feature_head import FeatureUncertaintyHead
from vos_det.core.outlier_synthesis import OutlierSynthesizer, sample_boundary_outliers
from vos_det.core.queues import ClassFeatureQueues
from vos_det.core.spectral_penalty import singular_value_penalty
from vos_det.core.training_diagnostics import binary_entropy, separation_auroc
from vos_det.modeling.uncertainty_metrics import log_uncertainty_metrics

# ----------------------------------------------------------------------------- toy problems


def _shell_around_core(num: int, dim: int, seed: int):
    """[num, dim] core features around a mean far from the origin, and [num, dim] outliers on a
    shell of radius 3 around the same mean (core spread 0.3 per axis)."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.zeros(dim)
    mean[0] = 5.0
    core = mean + 0.3 * torch.randn(num, dim, generator=generator)
    directions = torch.randn(num, dim, generator=generator)
    shell = mean + 3.0 * directions / directions.norm(dim=1, keepdim=True)
    return core, shell


def _train(loss_fn, parameters, steps: int = 300, lr: float = 0.01) -> list:
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _auroc(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> float:
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return roc_auc_score(labels, torch.cat((id_scores, ood_scores)).detach().numpy())


def _energy_band(num: int, seed: int):
    """[num, 1] logits of one class: a core around 2 (ID), and outliers on the "shell" of
    radius 1.5 around it, which in one dimension is the two points 0.5 and 3.5 (plus noise).

    In more dimensions no energy head can separate a shell (part of it lies in the classifier's
    null space, at the core's energy): the feature head's test takes that case."""
    generator = torch.Generator().manual_seed(seed)
    core = 2.0 + 0.3 * torch.randn(num, 1, generator=generator)
    signs = torch.randint(0, 2, (num, 1), generator=generator) * 2.0 - 1.0
    shell = 2.0 + 1.5 * signs + 0.1 * torch.randn(num, 1, generator=generator)
    return core, shell


@pytest.mark.parametrize("hidden_dim", [0, 64])
def test_energy_head_mlp_separates_a_shell_around_a_core_the_logistic_layer_cannot(hidden_dim):
    torch.manual_seed(0)
    core, shell = _energy_band(256, seed=1)
    head = EnergyUncertaintyHead(1, hidden_dim)
    losses = _train(lambda: head.loss(head.energy(core), head.energy(shell)), head.parameters())
    test_core, test_shell = _energy_band(256, seed=2)
    auroc = _auroc(head.vos_score(test_core), head.vos_score(test_shell))
    assert np.mean(losses[-20:]) < losses[0]
    if hidden_dim == 0:
        # A monotone map of the energy ranks as the energy does, or reversed: no better than
        # the better of the two, which the symmetric shell holds near 0.5.
        energy_auroc = _auroc(-head.energy(test_core), -head.energy(test_shell))
        assert auroc <= max(energy_auroc, 1 - energy_auroc) + 1e-6 < 0.65
    else:
        assert auroc > 0.95


def test_feature_head_separates_a_shell_around_a_core():
    # Unnormalised: a shell offset along the mean's own direction only changes the length, which
    # normalisation would remove.
    torch.manual_seed(0)
    core, shell = _shell_around_core(512, 8, seed=1)
    head = FeatureUncertaintyHead(8, 32, normalize=False)
    losses = _train(lambda: head.loss(core, shell), head.parameters(), steps=200)
    test_core, test_shell = _shell_around_core(512, 8, seed=2)
    assert _auroc(head.id_score(test_core), head.id_score(test_shell)) > 0.95
    assert np.mean(losses[-20:]) < 0.5 * losses[0]


def test_normalised_feature_head_judges_directions_only():
    head = FeatureUncertaintyHead(6, 8)
    features = torch.randn(5, 6)
    torch.testing.assert_close(head.id_logit(features), head.id_logit(7.5 * features))


def test_heads_refuse_bad_shapes_and_empty_losses():
    with pytest.raises(ValueError, match="hidden_dim must be >= 0"):
        EnergyUncertaintyHead(3, -1)
    head = FeatureUncertaintyHead(4, 8)
    with pytest.raises(ValueError, match=r"features must have shape \[N, 4\]"):
        head.id_logit(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="needs at least one feature"):
        head.loss(torch.zeros(0, 4), torch.zeros(0, 4))


# ----------------------------------------------------------------------------- FEVER-OOD


@pytest.mark.parametrize("kind", ["least_singular_value", "condition_number"])
def test_singular_value_penalty_values_and_finite_difference_gradient(kind):
    weight = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    singular_values = np.linalg.svd(weight.numpy(), compute_uv=False)
    expected = (
        1 / singular_values[-1]
        if kind == "least_singular_value"
        else singular_values[0] / singular_values[-1]
    )
    assert singular_value_penalty(weight, kind).item() == pytest.approx(expected, rel=1e-12)
    weight.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: singular_value_penalty(w, kind), (weight,))


def test_singular_value_penalty_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be one of"):
        singular_value_penalty(torch.ones(2, 3), "spectral")


# ----------------------------------------------------------------------------- boundary synthesis


def _kth_distance_bruteforce(point: np.ndarray, bank: np.ndarray, k: int) -> float:
    return sorted(float(np.linalg.norm(point - row)) for row in bank)[k - 1]


def test_boundary_outliers_match_a_bruteforce_reference():
    rng = np.random.default_rng(0)
    classes = [rng.normal(3 * c, 1.0, (12, 4)).astype(np.float32) for c in range(2)]
    k, num_boundary, num_candidates, num_select, noise_scale = 3, 4, 10, 2, 1.5
    outliers = sample_boundary_outliers(
        [torch.from_numpy(x) for x in classes],
        num_candidates,
        num_select,
        k,
        num_boundary,
        noise_scale,
        generator=torch.Generator().manual_seed(5),
    )
    noise_source = torch.Generator().manual_seed(5)
    bank = np.concatenate(classes)
    expected = []
    for x in classes:
        radii = np.array(
            [_kth_distance_bruteforce(x[i], np.delete(x, i, axis=0), k) for i in range(len(x))]
        )
        boundary = x[np.argsort(-radii, kind="stable")[:num_boundary]]
        sigma = noise_scale * radii.mean() / math.sqrt(x.shape[1])
        noise = torch.randn(num_candidates, x.shape[1], generator=noise_source).numpy()
        candidates = boundary[np.arange(num_candidates) % num_boundary] + sigma * noise
        distances = np.array([_kth_distance_bruteforce(c, bank, k) for c in candidates])
        expected.append(candidates[np.argsort(-distances, kind="stable")[:num_select]])
    np.testing.assert_allclose(outliers.numpy(), np.concatenate(expected), rtol=1e-5, atol=1e-5)


def test_boundary_outliers_lie_outside_the_queued_features():
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(0, 1, (200, 8)).astype(np.float32))
    outliers = sample_boundary_outliers([features], 500, 20, 10, 20, 1.0)
    own_radius = torch.cdist(features, features).kthvalue(11, dim=1).values
    outlier_radius = torch.cdist(outliers, features).kthvalue(10, dim=1).values
    assert outlier_radius.min() > own_radius.median()


def test_synthesizer_draws_for_the_ready_classes_with_either_method():
    queues = ClassFeatureQueues(3, 20, 4)
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(20)
    queues.push(torch.randn(60, 4, generator=generator) + 10 * labels[:, None].float(), labels)
    ready = torch.tensor([True, False, True])
    means = torch.stack([queues.features[k, :20].mean(0) for k in range(3)])
    for method in ("gaussian", "boundary"):
        synthesizer = OutlierSynthesizer(method, 50, 3, boundary_k=5, num_boundary=4)
        outliers = synthesizer(queues, ready)
        assert outliers.shape == (6, 4)
        # The classes lie 10 * sqrt(4) = 20 apart (spread 1): each outlier is nearest to the
        # mean of the ready class it was drawn for, classes in order, 3 each.
        nearest = torch.cdist(outliers.float(), means).argmin(dim=1)
        assert nearest.tolist() == [0, 0, 0, 2, 2, 2], method
    assert OutlierSynthesizer("boundary", 50, 3, boundary_k=5).min_class_count() == 6
    with pytest.raises(ValueError, match="method must be one of gaussian, boundary"):
        OutlierSynthesizer("uniform", 50, 3)


# ----------------------------------------------------------------------------- diagnostics


def test_separation_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    id_values = rng.integers(0, 5, 40).astype(float)
    ood_values = rng.integers(0, 4, 30).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[id_values, ood_values])
    measured = separation_auroc(torch.tensor(id_values), torch.tensor(ood_values))
    assert measured == pytest.approx(expected, abs=1e-12)


def test_logged_diagnostics_are_the_heads_and_scikit_learns_numbers():
    head = EnergyUncertaintyHead(3)
    with torch.no_grad():
        head.logistic.weight.fill_(0.7)
        head.logistic.bias.fill_(-0.2)
    id_energy = torch.tensor([-3.0, -2.5, -2.5, -1.0])
    ood_energy = torch.tensor([-2.5, 0.5, 1.0])
    loss = head.loss(id_energy, ood_energy)
    with EventStorage(0) as storage:
        log_uncertainty_metrics(storage, head, id_energy, ood_energy, loss)
        logged = {name: storage.history(name).latest() for name in storage.histories()}
    logits = torch.cat([head.id_logit(id_energy), head.id_logit(ood_energy)]).detach().numpy()
    labels = np.r_[np.ones(4), np.zeros(3)]
    assert logged["vos/uncertainty_auroc"] == pytest.approx(roc_auc_score(labels, logits))
    assert logged["vos/uncertainty_loss"] == pytest.approx(log_loss(labels, 1 / (1 + np.exp(-logits))))
    assert logged["vos/uncertainty_mix_entropy"] == pytest.approx(log_loss(labels, np.full(7, 4 / 7)))
    assert logged["vos/id_energy"] == pytest.approx(-2.25)
    assert logged["vos/outlier_energy"] == pytest.approx(-1 / 3)
    assert logged["vos/logistic_slope"] == pytest.approx(0.7)


def test_binary_entropy_is_the_loss_of_a_constant_prediction():
    labels = np.r_[np.ones(30), np.zeros(10)]
    assert binary_entropy(30, 10) == pytest.approx(log_loss(labels, np.full(40, 0.75)))
    assert binary_entropy(5, 0) == 0.0


# ----------------------------------------------------------------------------- in the detector

OPTIONS = {
    "mlp_energy_head": {"ENERGY_HEAD.HIDDEN_DIM": 16},
    "fever": {"FEVER.PROJECTION_DIM": 8, "FEVER.PENALTY": "least_singular_value"},
    "feature_head": {"FEATURE_HEAD.HIDDEN_DIM": 16},
    "feature_head_boundary": {
        "FEATURE_HEAD.HIDDEN_DIM": 16,
        "SYNTHESIS": "boundary",
        "BOUNDARY.K": 2,
        "BOUNDARY.NUM_BOUNDARY": 4,
    },
}
NEW_LOSSES = {
    "fever": "loss_singular_value",
    "feature_head": "loss_feature_uncertainty",
    "feature_head_boundary": "loss_feature_uncertainty",
}


def _option_cfg(tiny_datasets, output_dir, option: str):
    cfg = tiny_cfg(*tiny_datasets, str(output_dir), **OPTIONS[option])
    if "FEATURE_HEAD.HIDDEN_DIM" in OPTIONS[option]:
        cfg.VOS.EVAL.SCORES = ("vos", "energy", "feature_head")
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_trains_with_finite_losses_and_logs_its_diagnostics(
    option, tiny_datasets, tmp_path
):
    cfg = _option_cfg(tiny_datasets, tmp_path, option)
    cfg.SOLVER.MAX_ITER = 6
    cfg.DATASETS.TEST = ()  # training only
    trainer = VOSTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    names = ["loss_uncertainty", "total_loss"] + (
        [NEW_LOSSES[option]] if option in NEW_LOSSES else []
    )
    for name in names:
        assert all(math.isfinite(value) for value, _ in history[name].values()), name
    active = [it for value, it in history["vos/active"].values() if value]
    assert active and min(active) >= cfg.VOS.START_ITER
    if option in NEW_LOSSES:
        assert history[NEW_LOSSES[option]].latest() > 0
    if option == "mlp_energy_head":
        assert "vos/logistic_slope" not in history
    for name in ("vos/uncertainty_auroc", "vos/uncertainty_mix_entropy", "vos/outlier_energy"):
        assert math.isfinite(history[name].latest()), name  # values: the test above
    if "FEATURE_HEAD.HIDDEN_DIM" in OPTIONS[option]:
        assert math.isfinite(history["vos/feature_head_auroc"].latest())


@pytest.mark.slow
def test_the_fever_loss_is_the_weighted_penalty_of_the_foreground_classifier(tiny_datasets, tmp_path):
    cfg = _option_cfg(tiny_datasets, tmp_path, "fever")
    cfg.VOS.FEVER.PENALTY_WEIGHT = 0.37
    model = build_model(cfg)
    model.train()
    predictor = model.roi_heads.box_predictor
    weight = predictor.cls_score.weight.detach().clone()
    batch = next(iter(VOSTrainer.build_train_loader(cfg)))
    with EventStorage(0) as storage:
        losses = model(batch)
        logged = storage.history("vos/singular_value_penalty").latest()
    foreground = weight[: cfg.MODEL.ROI_HEADS.NUM_CLASSES].double().numpy()
    penalty = 1.0 / np.linalg.svd(foreground, compute_uv=False).min()  # least_singular_value
    assert losses["loss_singular_value"].item() == pytest.approx(0.37 * penalty, rel=1e-5)
    assert logged == pytest.approx(penalty, rel=1e-5)


@pytest.mark.slow
def test_every_new_parameter_round_trips_through_a_checkpoint(tiny_datasets, tmp_path):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), **OPTIONS["fever"], **OPTIONS["feature_head"])
    cfg.VOS.ENERGY_HEAD.HIDDEN_DIM = 16
    cfg.VOS.EVAL.SCORES = ("vos", "feature_head", "mahalanobis")
    model = build_model(cfg)
    model.train()
    batch = next(iter(VOSTrainer.build_train_loader(cfg)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for iteration in range(cfg.VOS.START_ITER, cfg.VOS.START_ITER + 4):
        with EventStorage(start_iter=iteration):
            losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("options")
    restored = build_model(cfg)
    DetectionCheckpointer(restored).load(str(tmp_path / "options.pth"))
    saved, loaded = model.state_dict(), restored.state_dict()
    predictor = "roi_heads.box_predictor."
    new_keys = [
        key
        for key in saved
        if key.startswith(
            tuple(predictor + name for name in ("projection.", "feature_head.", "uncertainty.mlp."))
        )
    ]
    assert len(new_keys) == 2 + 6 + 4
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key


@pytest.mark.slow
def test_feature_head_and_projection_reach_inference(tiny_datasets, tmp_path):
    cfg = _option_cfg(tiny_datasets, tmp_path, "feature_head")
    cfg.VOS.FEVER.PROJECTION_DIM = 8
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.in_features == 8 and predictor.queues.dim == 8
    model.eval()
    batch = next(iter(VOSTrainer.build_train_loader(cfg)))
    with torch.no_grad():
        instances = model([{"image": item["image"]} for item in batch])[0]["instances"]
    scores = instances.feature_head_scores
    assert len(scores) > 0
    # Each detection's score is the head's sigmoid on one proposal's projected feature.
    with torch.no_grad():
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        heads = model.roi_heads
        boxes = [proposals[0].proposal_boxes]
        pooled = heads.box_pooler([features[f][:1] for f in heads.box_in_features], boxes)
        projected = predictor.classifier_features(heads.box_head(pooled))
        candidates = predictor.feature_head.id_score(projected)
    gaps = (scores[:, None] - candidates[None]).abs().min(dim=1).values
    assert float(gaps.max()) < 1e-5
    # Post-hoc statistics (tools/fit_feature_statistics.py) fit the projected features too.
    features, labels = ground_truth_box_features(model, batch)
    assert features.shape == (len(labels), 8)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SYNTHESIS": "uniform"}, "VOS.SYNTHESIS='uniform' must be one of gaussian, boundary"),
        ({"FEVER.PENALTY": "trace"}, "VOS.FEVER.PENALTY='trace' must be one of none"),
        (
            {"ENABLED": False, "FEATURE_HEAD.HIDDEN_DIM": 8},
            "VOS.FEATURE_HEAD.HIDDEN_DIM=8 needs VOS.ENABLED True",
        ),
        ({"SCORE": "feature_head"}, "the feature_head score needs the feature-space"),
        (
            {"SYNTHESIS": "boundary", "BOUNDARY.K": 8},
            "VOS.BOUNDARY.K=8 must be < VOS.QUEUE_SIZE",
        ),
    ],
)
def test_invalid_options_name_the_key(tiny_datasets, tmp_path, overrides, message):
    cfg = tiny_cfg(*tiny_datasets, str(tmp_path), **overrides)
    with pytest.raises(ValueError, match=message):
        build_model(cfg)


def test_the_paper_configuration_builds_the_paper_head(tiny_datasets, tmp_path):
    predictor = build_model(tiny_cfg(*tiny_datasets, str(tmp_path))).roi_heads.box_predictor
    assert predictor.projection is None and predictor.feature_head is None
    assert isinstance(predictor.uncertainty.logistic, torch.nn.Linear)
    assert predictor.synthesizer.method == "gaussian"
    assert predictor.synthesizer.num_select == 1
