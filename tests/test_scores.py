"""The score registry: names, requirements, values against NumPy."""

import numpy as np
import pytest
import scipy.special
import torch

from vos_det.core.energy import EnergyUncertaintyHead
from vos_det.core.scores import (
    ScoreInputs,
    compute_scores,
    get_score,
    register_score,
    score_names,
)


def _logits() -> torch.Tensor:
    return torch.randn(7, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("name", ["vos", "energy", "msp", "max_logit"])
def test_built_in_scores_need_only_what_they_declare_and_stay_in_their_range(name):
    definition = get_score(name)
    inputs = ScoreInputs(
        100 * _logits(),  # saturates the softmax and the sigmoid
        uncertainty=(
            EnergyUncertaintyHead(4).double() if "uncertainty" in definition.requires else None
        ),
    )
    values = compute_scores([name], inputs)[name]
    low, high = definition.value_range
    assert values.shape == (7,) and torch.isfinite(values).all()
    assert bool(((values >= low) & (values <= high)).all()), (values, definition.value_range)


def test_logit_scores_match_numpy():
    logits = _logits()
    array = logits.numpy()
    scores = compute_scores(["energy", "msp", "max_logit"], ScoreInputs(logits))
    np.testing.assert_allclose(scores["energy"], scipy.special.logsumexp(array, axis=1))
    np.testing.assert_allclose(scores["msp"], scipy.special.softmax(array, axis=1).max(1))
    np.testing.assert_allclose(scores["max_logit"], array.max(1))


def test_vos_score_is_the_heads_sigmoid_of_the_weighted_energy():
    head = EnergyUncertaintyHead(4).double()
    with torch.no_grad():
        head.energy_weights.copy_(torch.tensor([0.5, 1.0, 2.0, 0.0]))
        head.logistic.weight.fill_(0.7)
        head.logistic.bias.fill_(-0.3)
    logits = _logits()
    weighted = scipy.special.logsumexp(logits.numpy(), b=[0.5, 1.0, 2.0, 0.0], axis=1)
    expected = 1 / (1 + np.exp(-(0.7 * weighted - 0.3)))
    got = compute_scores(["vos"], ScoreInputs(logits, uncertainty=head))["vos"]
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12)


def test_a_score_without_what_it_needs_names_the_missing_input():
    with pytest.raises(ValueError, match="'vos' needs the trained energy uncertainty head"):
        compute_scores(["vos"], ScoreInputs(_logits()))
    with pytest.raises(ValueError, match="Unknown score 'entropy'; registered scores: vos, "):
        compute_scores(["entropy"], ScoreInputs(_logits()))


def test_new_scores_plug_in_and_names_are_unique():
    @register_score("test_feature_norm", requires=("box_features",))
    def feature_norm(inputs: ScoreInputs) -> torch.Tensor:
        return -inputs.box_features.norm(dim=1)

    features = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    inputs = ScoreInputs(torch.zeros(2, 3), box_features=features)
    assert "test_feature_norm" in score_names()
    torch.testing.assert_close(
        compute_scores(["test_feature_norm"], inputs)["test_feature_norm"],
        torch.tensor([-5.0, -1.0]),
    )
    with pytest.raises(ValueError, match="already registered"):
        register_score("energy")(feature_norm)
    with pytest.raises(ValueError, match="requires \\['gpu'\\]; known requirements"):
        register_score("test_bad", requires=("gpu",))
