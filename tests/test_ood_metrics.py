"""ood_metrics and roc_curve against scikit-learn and closed-form cases, under both protocols."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from vos_det.evaluation import ood_metrics
from vos_det.core.ood_metrics import fpr_at_closest_tpr, fpr_key, id_threshold_at_tpr
from vos_det.core.ood_metrics import roc_curve as vos_roc_curve

# The name of the false-positive rate at each TPR the tests use.
FPR_KEYS = {0.95: "FPR95", 0.5: "FPR50", 1.0: "FPR100", 0.01: "FPR1"}


def _sklearn_reference(id_scores, ood_scores, tpr, protocol):
    """FPR@TPR, AUROC and AUPR (percent) computed by scikit-learn, ID positive. The FPR is read
    at the smallest FPR with TPR >= tpr ("strict") or at argmin |TPR - tpr| ("paper")."""
    labels = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    scores = np.concatenate([id_scores, ood_scores])
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    if protocol == "strict":
        fpr = fprs[tprs >= tpr].min()
    else:
        fpr = fprs[np.argmin(np.abs(tprs - tpr))]
    return {
        FPR_KEYS[tpr]: 100.0 * fpr,
        "AUROC": 100.0 * roc_auc_score(labels, scores),
        "AUPR": 100.0 * average_precision_score(labels, scores),
    }


def _assert_matches_sklearn(id_scores, ood_scores, tpr=0.95, protocol="strict"):
    got = ood_metrics(id_scores, ood_scores, tpr=tpr, protocol=protocol)
    expected = _sklearn_reference(id_scores, ood_scores, tpr, protocol)
    assert set(got) == {FPR_KEYS[tpr], "AUROC", "AUPR"}
    for key, value in expected.items():
        assert isinstance(got[key], float)
        assert got[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("protocol", ["strict", "paper"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_continuous_scores(seed, protocol):
    rng = np.random.default_rng(seed)
    id_scores = rng.normal(1.0, 1.0, size=rng.integers(1, 300))
    ood_scores = rng.normal(0.0, 1.5, size=rng.integers(1, 300))
    _assert_matches_sklearn(id_scores, ood_scores, protocol=protocol)


@pytest.mark.parametrize("protocol", ["strict", "paper"])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tpr", [0.95, 0.5, 1.0, 0.01])
def test_matches_sklearn_on_heavily_tied_scores(seed, tpr, protocol):
    rng = np.random.default_rng(100 + seed)
    id_scores = np.round(rng.normal(1.0, 1.0, size=rng.integers(1, 200)))
    ood_scores = np.round(rng.normal(0.0, 1.0, size=rng.integers(1, 200)))
    _assert_matches_sklearn(id_scores, ood_scores, tpr=tpr, protocol=protocol)


def test_paper_fpr_is_read_at_the_closest_tpr_and_the_first_of_a_tie():
    # ROC points by decreasing threshold: (0, 0); t=4 (TPR .25, FPR 0); t=3 (.25, .5);
    # t=2 (.75, .5); t=1 (1, .5); t=0 (1, 1). TPR .25 and .75 are equally close to .5: the first
    # (highest threshold) is taken, FPR 0. "strict" reads the first point with TPR >= .5.
    id_scores, ood_scores = np.array([4.0, 2.0, 2.0, 1.0]), np.array([3.0, 0.0])
    assert fpr_at_closest_tpr(id_scores, ood_scores, 0.5) == 0.0
    assert ood_metrics(id_scores, ood_scores, 0.5, "paper")["FPR50"] == 0.0
    assert ood_metrics(id_scores, ood_scores, 0.5, "strict")["FPR50"] == 50.0
    # 10 ID scores: TPR .9 is closer to .95 than 1.0 in floating point.
    id_scores, ood_scores = np.arange(1.0, 11.0), np.array([1.5, 0.5])
    assert ood_metrics(id_scores, ood_scores, protocol="paper")["FPR95"] == 0.0
    assert ood_metrics(id_scores, ood_scores, protocol="strict")["FPR95"] == 50.0


def test_unknown_protocol_is_named():
    with pytest.raises(ValueError, match="Unknown OOD evaluation protocol 'vos'.*paper, strict"):
        ood_metrics([1.0], [0.0], protocol="vos")


def test_all_scores_tied():
    assert ood_metrics([0.5] * 7, [0.5] * 3) == pytest.approx(
        {"FPR95": 100.0, "AUROC": 50.0, "AUPR": 70.0}
    )


def test_perfect_separation():
    got = ood_metrics([2.0, 3.0, 4.0], [0.0, 1.0])
    assert got == {"FPR95": 0.0, "AUROC": 100.0, "AUPR": 100.0}


def test_reversed_separation():
    got = ood_metrics([0.0, 1.0], [2.0, 3.0, 4.0])
    assert got["FPR95"] == 100.0
    assert got["AUROC"] == 0.0


def test_threshold_keeps_at_least_tpr_of_id_scores():
    # 20 ID scores: keeping 95% means keeping 19, so the threshold is the 19th largest (3.0);
    # an OOD score equal to the threshold counts as a false positive.
    id_scores = np.concatenate([np.arange(3.0, 22.0), [1.0]])
    ood_scores = np.array([3.0, 2.5, 0.0, 4.0])
    assert ood_metrics(id_scores, ood_scores, protocol="strict")["FPR95"] == pytest.approx(50.0)


def test_accepts_lists_and_integer_arrays():
    got = ood_metrics([3, 4], np.array([1, 2], dtype=np.int64))
    assert got["AUROC"] == 100.0


@pytest.mark.parametrize(
    "id_scores, ood_scores, message",
    [
        ([], [1.0], "id_scores is empty"),
        ([1.0], [], "ood_scores is empty"),
        ([1.0, np.nan], [1.0], "NaN/Inf"),
        ([1.0], [np.inf], "NaN/Inf"),
        ([[1.0, 2.0]], [1.0], "1-D"),
        (1.0, [1.0], "1-D"),
    ],
)
def test_invalid_scores_raise(id_scores, ood_scores, message):
    with pytest.raises(ValueError, match=message):
        ood_metrics(id_scores, ood_scores)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5, float("nan")])
def test_invalid_tpr_raises(tpr):
    with pytest.raises(ValueError, match="tpr must be in"):
        ood_metrics([1.0], [0.0], tpr=tpr)


@pytest.mark.parametrize(
    "tpr, key", [(0.95, "FPR95"), (0.9, "FPR90"), (0.975, "FPR97.5"), (1.0, "FPR100")]
)
def test_fpr_is_named_after_the_tpr_it_is_read_at(tpr, key):
    assert fpr_key(tpr) == key
    assert key in ood_metrics([1.0, 2.0], [0.0], tpr=tpr)


def test_id_threshold_is_the_score_that_tpr_of_id_scores_reach():
    id_scores = np.concatenate([np.arange(3.0, 22.0), [1.0]])  # 20 scores
    assert id_threshold_at_tpr(id_scores, 0.95) == 3.0  # the 19th largest
    assert id_threshold_at_tpr(id_scores, 1.0) == 1.0
    assert id_threshold_at_tpr(id_scores, 0.05) == 21.0


def test_roc_curve_area_equals_auroc():
    rng = np.random.default_rng(1)
    id_scores, ood_scores = rng.normal(1, 1, 200).round(1), rng.normal(0, 1, 150).round(1)
    fpr, tpr = vos_roc_curve(id_scores, ood_scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert 100 * area == pytest.approx(ood_metrics(id_scores, ood_scores)["AUROC"], abs=1e-9)
