"""vos_det.evaluation.protocol: kept boxes, metrics per OOD set and score, the ID score
thresholds, the "paper" and "strict" protocols, the Markdown table of report.format_table, and
the ID/OOD split of DATASETS.TEST."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from vos_det import add_vos_config, validate_vos_config
from vos_det.evaluation import EvaluationFolder, ProtocolResult, format_table, ood_metrics
from vos_det.evaluation.box_matching import EmptyBoxSetError, ScoreThreshold
from vos_det.evaluation.detectron2_adapters import split_test_sets
from vos_det.evaluation.protocol import evaluate_ood_protocol, keep_boxes

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


def _evaluate_strict(id_scores, ood, threshold=0.3, scores=("vos", "energy"), tpr=0.95):
    """evaluate_ood_protocol with a fixed threshold under the "strict" protocol, which the tests
    of the random box sets encode (boxes kept by class_prob, FPR at the first TPR reached)."""
    threshold = ScoreThreshold(threshold, "fixed")
    return evaluate_ood_protocol("id", id_scores, ood, threshold, list(scores), tpr, None, "strict")


def test_protocol_keeps_boxes_by_threshold_and_skips_empty_ood_sets(caplog):
    rng = np.random.default_rng(0)
    id_scores = _random_box_scores(rng, 50, shift=1.0)
    ood = {"ood_a": _random_box_scores(rng, 40), "ood_b": _random_box_scores(rng, 3)}
    ood["ood_b"]["class_prob"][:] = 0.1
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        result = _evaluate_strict(id_scores, ood)
    kept_id, kept_a = id_scores["class_prob"] >= 0.3, ood["ood_a"]["class_prob"] >= 0.3
    assert result.id_kept == kept_id.sum() and result.ood["ood_a"].kept == kept_a.sum()
    for score in ("vos", "energy"):
        assert result.ood["ood_a"].metrics[score] == ood_metrics(
            id_scores[score][kept_id], ood["ood_a"][score][kept_a], 0.95, protocol="strict"
        )
    assert result.ood["ood_b"].kept == 0 and result.ood["ood_b"].metrics == {}
    assert "No box of the OOD set ood_b reaches" in caplog.text
    rows = [line.split("|")[1:-1] for line in format_table({"": result}).splitlines()]
    ood_b_rows = [[cell.strip() for cell in row] for row in rows if row and "ood_b" in row[0]]
    assert ood_b_rows == [["ood_b", score, "-", "-", "-"] for score in ("vos", "energy")]
    with pytest.raises(EmptyBoxSetError, match="No box of the ID set id reaches"):
        _evaluate_strict(id_scores, ood, threshold=1.0, scores=["vos"])


def test_a_nan_score_is_named_and_the_other_scores_are_kept(caplog):
    rng = np.random.default_rng(3)
    id_scores = _random_box_scores(rng, 30, shift=1.0)
    ood = {"ood_a": _random_box_scores(rng, 20)}
    id_scores["class_prob"][:] = ood["ood_a"]["class_prob"][:] = 0.9
    ood["ood_a"]["vos"][4] = np.nan
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        result = _evaluate_strict(id_scores, ood)
    assert set(result.ood["ood_a"].metrics) == {"energy"}
    assert result.ood["ood_a"].metrics["energy"] == ood_metrics(
        id_scores["energy"], ood["ood_a"]["energy"], 0.95, protocol="strict"
    )
    assert "The vos score is NaN or infinite on 1 of the 20 kept boxes of ood_a" in caplog.text
    id_scores["energy"][0] = np.inf
    result = _evaluate_strict(id_scores, ood)
    assert result.ood["ood_a"].metrics == {} and set(result.id_score_thresholds) == {"vos"}


def test_id_score_thresholds_flag_the_complement_of_the_tpr():
    rng = np.random.default_rng(4)
    id_scores = _random_box_scores(rng, 40, shift=1.0)
    id_scores["class_prob"][:] = 0.9
    ood = {"ood_a": _random_box_scores(rng, 10)}
    ood["ood_a"]["class_prob"][:] = 0.9
    result = _evaluate_strict(id_scores, ood, tpr=0.9)
    for score in ("vos", "energy"):
        threshold = result.id_score_thresholds[score]
        assert np.count_nonzero(id_scores[score] >= threshold) == 36  # 90% of 40
        assert np.count_nonzero(id_scores[score] > threshold) == 35
        assert result.ood["ood_a"].metrics[score]["FPR90"] == pytest.approx(  # "strict" FPR
            100 * np.mean(ood["ood_a"][score] >= threshold)
        )
    assert result.fpr_key == "FPR90"
    assert type(result).from_dict(json.loads(json.dumps(result.to_dict()))) == result


def _proposal_boxes(rows):
    """Per-box arrays of hand-made detections: (proposal, class, class_prob, energy) rows; a
    proposal's largest class probability is the highest class_prob among its rows."""
    proposal, pred_class, class_prob, energy = (np.array(column) for column in zip(*rows))
    largest = {p: max(class_prob[proposal == p]) for p in set(proposal.tolist())}
    return {
        "image_id": np.zeros(len(rows), dtype=np.int64),
        "box": np.zeros((len(rows), 4), dtype=np.float32),
        "pred_class": pred_class,
        "class_prob": class_prob.astype(np.float32),
        "max_class_prob": np.array([largest[p] for p in proposal], dtype=np.float32),
        "energy": energy.astype(np.float32),
    }


@pytest.fixture
def proposal_case():
    """ID and OOD boxes where a proposal's second-class detection is below the threshold 0.5."""
    id_boxes = _proposal_boxes(
        [
            (0, 0, 0.8, 5.0),
            (0, 1, 0.15, 1.0),  # kept by "paper": its proposal's largest probability is 0.8
            (1, 2, 0.6, 4.0),
            (2, 0, 0.3, 3.0),  # kept by neither: its proposal's largest probability is 0.3
            (3, 1, 0.9, 6.0),
        ]
    )
    ood_boxes = _proposal_boxes(
        [(0, 0, 0.7, 4.5), (0, 2, 0.2, 2.0), (1, 1, 0.55, 1.5), (2, 1, 0.4, 7.0)]
    )
    return id_boxes, {"ood_a": ood_boxes}


def test_paper_keeps_a_proposals_other_class_detections(proposal_case):
    id_boxes, ood = proposal_case
    threshold = ScoreThreshold(0.5, "fixed")
    expected_kept = {"paper": ([0, 1, 2, 4], [0, 1, 2]), "strict": ([0, 2, 4], [0, 2])}
    for protocol, (id_rows, ood_rows) in expected_kept.items():
        kept = keep_boxes(id_boxes, 0.5, protocol)
        np.testing.assert_array_equal(kept["energy"], id_boxes["energy"][id_rows])
        result = evaluate_ood_protocol(
            "id", id_boxes, ood, threshold, ["energy"], 0.95, None, protocol
        )
        assert (result.id_kept, result.ood["ood_a"].kept) == (len(id_rows), len(ood_rows))
        assert result.protocol == protocol
        assert result.ood["ood_a"].metrics["energy"] == ood_metrics(
            id_boxes["energy"][id_rows], ood["ood_a"]["energy"][ood_rows], 0.95, protocol
        )


def test_paper_protocol_needs_the_proposals_largest_probability(proposal_case):
    id_boxes, ood = proposal_case
    del ood["ood_a"]["max_class_prob"]
    with pytest.raises(
        ValueError, match="boxes of ood_a have no max_class_prob.*--protocol strict"
    ):
        evaluate_ood_protocol("id", id_boxes, ood, ScoreThreshold(0.5, "fixed"), ["energy"])
    evaluate_ood_protocol(
        "id", id_boxes, ood, ScoreThreshold(0.5, "fixed"), ["energy"], protocol="strict"
    )


def test_the_protocol_is_recorded_in_ood_results_and_read_back(proposal_case, tmp_path):
    id_boxes, ood = proposal_case
    folder = EvaluationFolder(str(tmp_path))
    for protocol in ("paper", "strict"):
        result = evaluate_ood_protocol(
            "id", id_boxes, ood, ScoreThreshold(0.5, "fixed"), ["energy"], protocol=protocol
        )
        folder.write_results(result)
        assert json.loads(Path(folder.results_file).read_text())["protocol"] == protocol
        assert folder.read_results() == result
    written_before = result.to_dict()
    del written_before["protocol"]  # a file written before the protocol was recorded
    assert ProtocolResult.from_dict(written_before).protocol == "strict"
    with pytest.raises(ValueError, match="Unknown OOD evaluation protocol 'vos'"):
        ProtocolResult.from_dict({**written_before, "protocol": "vos"})


def test_the_table_marks_the_paper_comparable_energy_row(proposal_case, caplog):
    id_boxes, ood = proposal_case
    for box_scores in (id_boxes, ood["ood_a"]):
        box_scores["vos"] = box_scores["energy"] / 10
    threshold = ScoreThreshold(0.5, "fixed")
    runs = {
        protocol: evaluate_ood_protocol(
            "id", id_boxes, ood, threshold, ["vos", "energy"], protocol=protocol
        )
        for protocol in ("paper", "strict")
    }
    rows = {protocol: _table_rows(format_table({"": run})) for protocol, run in runs.items()}
    assert [row[:2] for row in rows["paper"][1:]] == [["ood_a", "vos"], ["ood_a", "energy (paper)"]]
    assert [row[:2] for row in rows["strict"][1:]] == [["ood_a", "vos"], ["ood_a", "energy"]]
    assert rows["paper"][0][:3] == ["id", "paper", "0.5000"]  # ID set, protocol, threshold
    with caplog.at_level(logging.WARNING, logger="vos_det"):
        evaluate_ood_protocol("id", id_boxes, ood, threshold, ["vos"])
    assert "leave out energy, the score the paper's tables use" in caplog.text


def _table_rows(table: str) -> list:
    """The data rows of format_table's two tables (ID rows, then OOD rows), cells stripped."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows if row[0] not in ("ID set", "OOD set") and "---" not in row[0]]


def test_split_test_sets_requires_exactly_one_id_set_with_ood_or_mixed_sets():
    MetadataCatalog.get("split_ood").set(evaluator_type="ood")
    MetadataCatalog.get("split_mixed").set(evaluator_type="open_set")
    MetadataCatalog.get("split_id_a").set(evaluator_type="coco")
    MetadataCatalog.get("split_id_b")  # no evaluator_type: Detectron2's own sets count as ID
    assert split_test_sets(["split_id_a", "split_ood"]) == (["split_id_a"], ["split_ood"], [])
    assert split_test_sets(["split_mixed", "split_id_a", "split_ood"]) == (
        ["split_id_a"],
        ["split_ood"],
        ["split_mixed"],
    )
    assert split_test_sets(["split_id_a", "split_id_b"]) == (["split_id_a", "split_id_b"], [], [])
    with pytest.raises(ValueError, match="exactly one ID set.*holds 2 ID set"):
        split_test_sets(["split_id_a", "split_id_b", "split_ood"])
    with pytest.raises(ValueError, match="holds 0 ID set"):
        split_test_sets(["split_ood"])
    with pytest.raises(ValueError, match=r"mixed sets \['split_mixed'\].*holds 0 ID set"):
        split_test_sets(["split_mixed"])


def test_an_unknown_protocol_in_the_config_is_named():
    cfg = get_cfg()
    add_vos_config(cfg)
    assert cfg.VOS.EVAL.PROTOCOL == "paper" and "energy" in cfg.VOS.EVAL.SCORES
    cfg.VOS.EVAL.PROTOCOL = "vos"
    with pytest.raises(ValueError, match="VOS.EVAL.PROTOCOL='vos' must be one of paper, strict"):
        validate_vos_config(cfg)
