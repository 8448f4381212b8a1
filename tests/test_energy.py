"""Energy scores and the uncertainty head against naive float64 formulas and a toy problem."""

import numpy as np
import pytest
import scipy.special
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from vos_det.core.energy import (
    EnergyUncertaintyHead,
    energy_score,
    max_logit_score,
    msp_score,
    weighted_energy,
)


def _naive_weighted_energy(logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """-log sum_{k: w_k > 0} w_k exp(f_k) in float64, shifted by the largest active logit."""
    active = weights > 0
    shift = logits[:, active].max(1, keepdims=True)
    total = (weights[active] * np.exp(logits[:, active] - shift)).sum(1)
    return -(shift[:, 0] + np.log(total))


def _logits(num_boxes: int = 50, num_classes: int = 6, offset: float = 0.0, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return offset + 4.0 * torch.randn(num_boxes, num_classes, generator=generator).double()


@pytest.mark.parametrize("offset", [0.0, 1000.0, -1000.0])
def test_weighted_energy_matches_naive_formula(offset):
    logits = _logits(offset=offset)
    weights = torch.tensor([0.5, 0.0, 2.0, -1.0, 1.0, 3.0], dtype=torch.float64)
    expected = _naive_weighted_energy(logits.numpy(), weights.numpy())
    np.testing.assert_allclose(weighted_energy(logits, weights).numpy(), expected, rtol=1e-12)
    energy32 = weighted_energy(logits.float(), weights.float())
    assert energy32.dtype == torch.float32
    np.testing.assert_allclose(energy32.numpy(), expected, rtol=1e-6, atol=1e-4)


def test_zero_weight_classes_contribute_nothing():
    logits = _logits(num_classes=3)
    weights = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    boosted = logits.clone()
    boosted[:, 1] += 200.0  # a zero-weight class winning by far must not change E
    torch.testing.assert_close(weighted_energy(boosted, weights), weighted_energy(logits, weights))


def test_unit_weights_give_negative_logsumexp():
    logits = _logits()
    energy = weighted_energy(logits, torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(energy, -torch.logsumexp(logits, dim=1))


def test_float16_logits_are_promoted():
    logits = _logits().half()
    energy = weighted_energy(logits, torch.ones(6))
    assert energy.dtype == torch.float32
    torch.testing.assert_close(energy, -torch.logsumexp(logits.float(), dim=1))


def test_scores_match_numpy():
    logits = _logits()
    array = logits.numpy()
    np.testing.assert_allclose(energy_score(logits), scipy.special.logsumexp(array, axis=1))
    np.testing.assert_allclose(msp_score(logits), scipy.special.softmax(array, axis=1).max(1))
    np.testing.assert_allclose(max_logit_score(logits), array.max(1))


def test_head_starts_as_plain_energy_score():
    head = EnergyUncertaintyHead(6).double()
    logits = _logits()
    torch.testing.assert_close(head.energy(logits), -energy_score(logits))
    torch.testing.assert_close(head.id_logit(head.energy(logits)), energy_score(logits))
    torch.testing.assert_close(head.vos_score(logits), torch.sigmoid(energy_score(logits)))


def test_loss_is_binary_cross_entropy_over_both_sets():
    head = EnergyUncertaintyHead(3)
    with torch.no_grad():
        head.logistic.weight.fill_(0.7)
        head.logistic.bias.fill_(-0.2)
    id_energy, ood_energy = torch.tensor([-3.0, -1.0, 0.5]), torch.tensor([2.0, -0.5])

    def logit(energy):
        return -0.7 * energy - 0.2

    terms = [-np.log(scipy.special.expit(logit(e))) for e in id_energy.tolist()]
    terms += [-np.log(1.0 - scipy.special.expit(logit(e))) for e in ood_energy.tolist()]
    assert head.loss(id_energy, ood_energy).item() == pytest.approx(np.mean(terms), rel=1e-6)
    only_id = head.loss(id_energy, torch.zeros(0))
    assert only_id.item() == pytest.approx(np.mean(terms[:3]), rel=1e-6)
    only_ood = head.loss(torch.zeros(0), ood_energy)
    assert only_ood.item() == pytest.approx(np.mean(terms[3:]), rel=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        head.loss(torch.zeros(0), torch.zeros(0))


def test_gradients_reach_weights_logistic_layer_and_classifier():
    classifier = nn.Linear(8, 4)
    head = EnergyUncertaintyHead(4)
    inputs = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    energies = head.energy(classifier(inputs))
    head.loss(energies[:6], energies[6:]).backward()
    for name, parameter in [
        ("energy_weights", head.energy_weights),
        ("logistic.weight", head.logistic.weight),
        ("logistic.bias", head.logistic.bias),
        ("classifier.weight", classifier.weight),
    ]:
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda head: head.energy(torch.zeros(5, 3)), "4 foreground classes"),
        (lambda head: head.energy(torch.zeros(5)), r"shape \[N, K\]"),
        (lambda head: head.id_logit(torch.zeros(5, 1)), r"shape \[N\]"),
        (lambda head: weighted_energy(torch.zeros(5, 4), torch.ones(3)), r"shape \[4\]"),
    ],
)
def test_rejects_bad_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call(EnergyUncertaintyHead(4))


def _toy_batch(generator: torch.Generator, size: int = 64):
    """ID: three clusters on a circle of radius 4 (labels 0..2); OOD: a blob at the origin."""
    labels = torch.randint(0, 3, (size,), generator=generator)
    angles = 2 * np.pi * labels.float() / 3
    centres = 4.0 * torch.stack((angles.cos(), angles.sin()), dim=1)
    id_inputs = centres + 0.5 * torch.randn(size, 2, generator=generator)
    ood_inputs = 0.7 * torch.randn(size, 2, generator=generator)
    return id_inputs, labels, ood_inputs


@pytest.mark.slow
def test_uncertainty_loss_separates_id_from_ood_on_toy_problem():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    classifier, head = nn.Linear(2, 3), EnergyUncertaintyHead(3)
    optimizer = torch.optim.Adam([*classifier.parameters(), *head.parameters()], lr=0.05)
    losses = []
    for _ in range(200):
        id_inputs, labels, ood_inputs = _toy_batch(generator)
        id_logits = classifier(id_inputs)
        uncertainty = head.loss(head.energy(id_logits), head.energy(classifier(ood_inputs)))
        loss = nn.functional.cross_entropy(id_logits, labels) + uncertainty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(uncertainty.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    id_inputs, _, ood_inputs = _toy_batch(torch.Generator().manual_seed(1), size=500)
    with torch.no_grad():
        scores = torch.cat(
            (head.vos_score(classifier(id_inputs)), head.vos_score(classifier(ood_inputs)))
        )
    truth = np.r_[np.ones(500), np.zeros(500)]
    assert roc_auc_score(truth, scores.numpy()) > 0.95
