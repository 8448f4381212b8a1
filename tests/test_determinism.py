"""The same config and seed give the same model and the same metrics, to the last bit."""

import json
from pathlib import Path

import pytest
import torch

from tiny_detection import tiny_cfg
from vos_det.experiments.parallel_runs import train_and_evaluate

pytestmark = pytest.mark.slow


def _train(tiny_datasets, tiny_ood_dataset, output: Path, seed: int):
    cfg = tiny_cfg(*tiny_datasets, str(output))
    cfg.DATASETS.TEST = (tiny_datasets[1], tiny_ood_dataset)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.01
    cfg.VOS.EVAL.SCORE_THRESHOLD = 0.05
    cfg.VOS.EVAL.SAVE_PLOTS = False
    cfg.VOS.START_ITER = 2  # the sampler draws outliers in most steps
    cfg.SEED = seed
    cfg.freeze()
    train_and_evaluate(cfg, "determinism", threads=1)
    model = torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    results = json.loads((output / "inference" / "ood_results.json").read_text())
    return model, results


def test_same_seed_same_weights_queues_and_metrics(tiny_datasets, tiny_ood_dataset, tmp_path):
    first, first_results = _train(tiny_datasets, tiny_ood_dataset, tmp_path / "a", seed=5)
    second, second_results = _train(tiny_datasets, tiny_ood_dataset, tmp_path / "b", seed=5)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert first_results == second_results
    other, _ = _train(tiny_datasets, tiny_ood_dataset, tmp_path / "c", seed=6)
    assert not torch.equal(
        first["roi_heads.box_predictor.cls_score.weight"],
        other["roi_heads.box_predictor.cls_score.weight"],
    )
