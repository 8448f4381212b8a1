"""vos_det.evaluation.score_collector: per-box arrays gathered from every worker."""

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm

from vos_det.evaluation import OODScoreCollector
from vos_det.core.scores import ScoreInputs, compute_scores

SCORES = ("vos", "energy", "msp", "max_logit")
LOGIT_SCORES = ("energy", "msp", "max_logit")
IMAGE_SIZE = 64


def _fake_output(num_boxes: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    instances = Instances((IMAGE_SIZE, IMAGE_SIZE))
    instances.pred_boxes = Boxes(torch.rand(num_boxes, 4, generator=generator) * 30)
    instances.scores = torch.rand(num_boxes, generator=generator)
    instances.pred_classes = torch.randint(0, 3, (num_boxes,), generator=generator)
    instances.fg_logits = torch.randn(num_boxes, 3, generator=generator)
    instances.max_class_probs = instances.scores + (1 - instances.scores) * torch.rand(
        num_boxes, generator=generator
    )
    instances.vos_scores = torch.rand(num_boxes, generator=generator)
    for name, values in compute_scores(LOGIT_SCORES, ScoreInputs(instances.fg_logits)).items():
        instances.set(f"{name}_scores", values)
    return {"instances": instances}


def test_collector_gathers_every_worker_on_the_main_process(monkeypatch):
    worker0, worker1 = OODScoreCollector("d", SCORES), OODScoreCollector("d", SCORES)
    for collector in (worker0, worker1):
        collector.reset()
    outputs = [_fake_output(3, 0), _fake_output(0, 1), _fake_output(2, 2)]
    worker0.process([{"image_id": "a.png"}, {"image_id": "b.png"}], outputs[:2])
    worker1.process([{"image_id": "long/c.png"}], outputs[2:])
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [data, worker1._images])
    arrays = worker0.evaluate()[OODScoreCollector.RESULT_KEY]
    assert arrays["image_id"].tolist() == ["a.png"] * 3 + ["long/c.png"] * 2
    expected = [outputs[0]["instances"], outputs[2]["instances"]]
    logits = torch.cat([i.fg_logits for i in expected])
    np.testing.assert_array_equal(arrays["box"], torch.cat([i.pred_boxes.tensor for i in expected]))
    np.testing.assert_array_equal(arrays["class_prob"], torch.cat([i.scores for i in expected]))
    np.testing.assert_array_equal(
        arrays["max_class_prob"], torch.cat([i.max_class_probs for i in expected])
    )
    np.testing.assert_array_equal(
        arrays["pred_class"], torch.cat([i.pred_classes for i in expected])
    )
    np.testing.assert_array_equal(arrays["vos"], torch.cat([i.vos_scores for i in expected]))
    expected_scores = compute_scores(LOGIT_SCORES, ScoreInputs(logits))
    for name in LOGIT_SCORES:
        np.testing.assert_allclose(arrays[name], expected_scores[name], rtol=1e-6)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert worker0.evaluate() == {}


@pytest.mark.parametrize("field", ["msp_scores", "max_class_probs"])
def test_collector_rejects_models_without_the_score_fields(field):
    output = _fake_output(2, 0)
    output["instances"].remove(field)
    with pytest.raises(ValueError, match=f"no {field}.*ROI_HEADS.NAME 'VOSROIHeads'"):
        OODScoreCollector("d", SCORES).process([{"image_id": 0}], [output])


def test_collector_without_images_returns_every_array_empty():
    collector = OODScoreCollector("d", SCORES, distributed=False)
    collector.reset()
    arrays = collector.evaluate()[OODScoreCollector.RESULT_KEY]
    assert set(arrays) == {"image_id", "box", "pred_class", "class_prob", "max_class_prob", *SCORES}
    assert all(len(array) == 0 for array in arrays.values())
