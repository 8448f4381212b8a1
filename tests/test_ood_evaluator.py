"""OOD evaluation end to end: VOSTrainer.test on the session's tiny VOS run (tests/conftest.py)
writes ood_results.json, the per-box scores and the plots, and reports to the evaluation hook.
The session's run uses the default protocol, "paper"."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tiny_detection import IMAGE_SIZE, TINY_OOD
from vos_det.engine import VOSTrainer
from vos_det.evaluation import EvaluationFolder, ood_metrics
from vos_det.evaluation.box_matching import derive_score_threshold, paper_score_threshold
from vos_det.evaluation.detectron2_adapters import ground_truth_arrays

pytestmark = pytest.mark.slow


def test_test_writes_results_plots_and_scores(trained_vos_run, tiny_datasets):
    cfg, _ = trained_vos_run
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    for name in cfg.DATASETS.TEST:
        assert (folder / f"scores_{name}.npz").is_file()
    for png in [f"hist_{score}.png" for score in cfg.VOS.EVAL.SCORES] + [f"roc_{TINY_OOD}.png"]:
        assert (folder / "ood_plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    saved = json.loads((folder / "ood_results.json").read_text())
    id_arrays = EvaluationFolder(str(folder)).load_box_scores(tiny_datasets[1])
    ood_arrays = EvaluationFolder(str(folder)).load_box_scores(TINY_OOD)
    assert saved["id_dataset"] == tiny_datasets[1] and saved["threshold"]["value"] == 0.05
    assert saved["protocol"] == "paper"
    # The paper's rule: a box is kept by its proposal's largest class probability.
    id_kept = id_arrays["max_class_prob"] >= 0.05
    ood_kept = ood_arrays["max_class_prob"] >= 0.05
    assert 0 < id_kept.sum() == saved["id_kept"] and saved["id_boxes"] == len(id_kept)
    assert 0 < ood_kept.sum() == saved["ood"][TINY_OOD]["kept"]
    assert ood_arrays["image_id"].dtype.kind == "U"  # OOD folder images are named by path
    for score in cfg.VOS.EVAL.SCORES:
        expected = ood_metrics(
            id_arrays[score][id_kept], ood_arrays[score][ood_kept], 0.95, protocol="paper"
        )
        assert saved["ood"][TINY_OOD]["metrics"][score] == expected


def test_evaluation_hook_received_flat_float_results(trained_vos_run):
    _, trainer = trained_vos_run
    latest = trainer.storage.latest()
    for score in trainer.cfg.VOS.EVAL.SCORES:
        assert f"{TINY_OOD}/{score}/FPR95" in latest
    assert f"{trainer.cfg.DATASETS.TEST[0]}/bbox/AP" in latest
    assert latest[f"{trainer.cfg.DATASETS.TEST[0]}/ood_protocol/threshold"][0] == 0.05


def test_id_ap_agrees_with_pycocotools(trained_vos_run, tiny_datasets):
    cfg, _ = trained_vos_run
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    saved = json.loads((folder / "ood_results.json").read_text())
    arrays = EvaluationFolder(str(folder)).load_box_scores(tiny_datasets[1])
    images, annotations = [], []
    for record in DatasetCatalog.get(tiny_datasets[1]):
        images.append({"id": record["image_id"], "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        for annotation in record["annotations"]:
            x0, y0, x1, y1 = annotation["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record["image_id"],
                    "category_id": annotation["category_id"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": str(i)} for i in range(3)],
    }
    boxes = arrays["box"]  # float32, converted the way COCOEvaluator converts its tensors
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    detections = [
        {"image_id": int(i), "category_id": int(c), "bbox": b, "score": s}
        for i, c, b, s in zip(
            arrays["image_id"], arrays["pred_class"], xywh.tolist(), arrays["class_prob"].tolist()
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    for index, key in enumerate(("AP", "AP50", "AP75")):
        assert saved["id_metrics"][key] == pytest.approx(100 * evaluation.stats[index], abs=1e-9)


@pytest.mark.parametrize(
    "protocol, derive, source",
    [("strict", derive_score_threshold, "f1"), ("paper", paper_score_threshold, "paper_f1")],
)
def test_derived_threshold_is_the_protocols_f1_optimal_one(
    trained_vos_run, tiny_datasets, protocol, derive, source
):
    cfg, trainer = trained_vos_run
    cfg = cfg.clone()
    cfg.defrost()
    cfg.VOS.EVAL.PROTOCOL = protocol
    cfg.VOS.EVAL.SCORE_THRESHOLD = -1.0
    cfg.VOS.EVAL.SAVE_PLOTS = False
    cfg.OUTPUT_DIR = f"{cfg.OUTPUT_DIR}_derived_{protocol}"
    results = VOSTrainer.test(cfg, trainer.model)
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    arrays = EvaluationFolder(str(folder)).load_box_scores(tiny_datasets[1])
    expected = derive(
        arrays, ground_truth_arrays(DatasetCatalog.get(tiny_datasets[1])), ["red", "green", "blue"]
    )
    saved = json.loads((folder / "ood_results.json").read_text())
    assert saved["protocol"] == protocol
    assert saved["threshold"] == {
        "value": expected.value,
        "source": source,
        "per_class": expected.per_class,
    }
    assert results[tiny_datasets[1]]["ood_protocol"]["threshold"] == expected.value
    assert not (folder / "ood_plots").exists()


def test_without_ood_sets_it_is_plain_coco_evaluation(trained_vos_run, tiny_datasets):
    cfg, trainer = trained_vos_run
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = (tiny_datasets[1],)
    cfg.OUTPUT_DIR = cfg.OUTPUT_DIR + "_id_only"
    results = VOSTrainer.test(cfg, trainer.model)
    assert set(results) == {"bbox"} and "AP50" in results["bbox"]
    folder = Path(cfg.OUTPUT_DIR) / "inference"
    assert (folder / f"scores_{tiny_datasets[1]}.npz").is_file()
    assert not (folder / "ood_results.json").exists()
