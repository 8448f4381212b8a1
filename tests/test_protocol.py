"""vos_det.evaluation.protocol: kept boxes, metrics per OOD set and score, the ID score
thresholds, the Markdown table of report.format_table, and the ID/OOD split of DATASETS.TEST."""

import json
import logging

import numpy as np
import pytest
from detectron2.data import MetadataCatalog

from vos_det.evaluation import format_table, ood_metrics
from vos_det.evaluation.box_matching import EmptyBoxSetError, ScoreThreshold
from vos_det.evaluation.detectron2_adapters import split_id_and_ood
from vos_det.evaluation.protocol import evaluate_ood_protocol

SCORES = ("vos", "energy", "msp", "max_logit")


def _random_box_scores(rng, num_boxes, shift=0.0):
    arrays = {
        "image_id": rng.integers(0, 5, num_boxes),
        "box": rng.uniform(0, 50, (num_boxes, 4)).astype(np.float32),
        "pred_class": rng.integers(0, 3, num_boxes),
        "class_prob": rng.uniform(0, 1, num_boxes).astype(np.float32),
    }
    arrays.update({s: (rng.normal(shift, 1, num_boxes)).astype(np.float32) for s in SCORES})
    return arrays


def test_protocol_keeps_boxes_by_threshold_and_skips_empty_ood_sets(caplog):
    rng = np.random.default_rng(0)
    id_scores = _random_box_scores(rng, 50, shift=1.0)
    ood = {"ood_a": _random_box_scores(rng, 40), "ood_b": _random_box_scores(rng, 3)}
    ood["ood_b"]["class_prob"][:] = 0.1
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        result = evaluate_ood_protocol(
            "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.95
        )
    kept_id, kept_a = id_scores["class_prob"] >= 0.3, ood["ood_a"]["class_prob"] >= 0.3
    assert result.id_kept == kept_id.sum() and result.ood["ood_a"].kept == kept_a.sum()
    for score in ("vos", "energy"):
        assert result.ood["ood_a"].metrics[score] == ood_metrics(
            id_scores[score][kept_id], ood["ood_a"][score][kept_a], 0.95
        )
    assert result.ood["ood_b"].kept == 0 and result.ood["ood_b"].metrics == {}
    assert "No box of the OOD set ood_b reaches" in caplog.text
    rows = [line.split("|")[1:-1] for line in format_table({"": result}).splitlines()]
    ood_b_rows = [[cell.strip() for cell in row] for row in rows if row and "ood_b" in row[0]]
    assert ood_b_rows == [["ood_b", score, "-", "-", "-"] for score in ("vos", "energy")]
    with pytest.raises(EmptyBoxSetError, match="No box of the ID set id reaches"):
        evaluate_ood_protocol("id", id_scores, ood, ScoreThreshold(1.0, "fixed"), ["vos"])


def test_a_nan_score_is_named_and_the_other_scores_are_kept(caplog):
    rng = np.random.default_rng(3)
    id_scores = _random_box_scores(rng, 30, shift=1.0)
    ood = {"ood_a": _random_box_scores(rng, 20)}
    id_scores["class_prob"][:] = ood["ood_a"]["class_prob"][:] = 0.9
    ood["ood_a"]["vos"][4] = np.nan
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        result = evaluate_ood_protocol(
            "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.95
        )
    assert set(result.ood["ood_a"].metrics) == {"energy"}
    assert result.ood["ood_a"].metrics["energy"] == ood_metrics(
        id_scores["energy"], ood["ood_a"]["energy"], 0.95
    )
    assert "The vos score is NaN or infinite on 1 of the 20 kept boxes of ood_a" in caplog.text
    id_scores["energy"][0] = np.inf
    result = evaluate_ood_protocol(
        "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.95
    )
    assert result.ood["ood_a"].metrics == {} and set(result.id_score_thresholds) == {"vos"}


def test_id_score_thresholds_flag_the_complement_of_the_tpr():
    rng = np.random.default_rng(4)
    id_scores = _random_box_scores(rng, 40, shift=1.0)
    id_scores["class_prob"][:] = 0.9
    ood = {"ood_a": _random_box_scores(rng, 10)}
    ood["ood_a"]["class_prob"][:] = 0.9
    result = evaluate_ood_protocol(
        "id", id_scores, ood, ScoreThreshold(0.3, "fixed"), ["vos", "energy"], 0.9
    )
    for score in ("vos", "energy"):
        threshold = result.id_score_thresholds[score]
        assert np.count_nonzero(id_scores[score] >= threshold) == 36  # 90% of 40
        assert np.count_nonzero(id_scores[score] > threshold) == 35
        assert result.ood["ood_a"].metrics[score]["FPR90"] == pytest.approx(
            100 * np.mean(ood["ood_a"][score] >= threshold)
        )
    assert result.fpr_key == "FPR90"
    assert type(result).from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_split_id_and_ood_requires_exactly_one_id_set_with_ood_sets():
    MetadataCatalog.get("split_ood").set(evaluator_type="ood")
    MetadataCatalog.get("split_id_a").set(evaluator_type="coco")
    MetadataCatalog.get("split_id_b")  # no evaluator_type: Detectron2's own sets count as ID
    assert split_id_and_ood(["split_id_a", "split_ood"]) == (["split_id_a"], ["split_ood"])
    assert split_id_and_ood(["split_id_a", "split_id_b"]) == (["split_id_a", "split_id_b"], [])
    with pytest.raises(ValueError, match="exactly one ID set.*holds 2 ID set"):
        split_id_and_ood(["split_id_a", "split_id_b", "split_ood"])
    with pytest.raises(ValueError, match="holds 0 ID set"):
        split_id_and_ood(["split_ood"])
