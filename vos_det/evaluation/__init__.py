"""Evaluation of open-set detectors: per-box score collection, the OOD protocol, reports."""

from .ood_evaluator import BOX_SCORE_NAMES, BoxScores, OODScoreCollector
from .ood_metrics import ood_metrics
from .protocol import (
    EmptyBoxSetError,
    OODSetResult,
    ProtocolResult,
    ScoreThreshold,
    derive_score_threshold,
    evaluate_ood_protocol,
    f1_optimal_thresholds,
    format_table,
    ground_truth_arrays,
    keep_boxes,
    match_detections,
    split_id_and_ood,
    to_detectron2_results,
)
from .report import (
    OOD_RESULTS_FILE,
    load_box_scores,
    plot_roc_curves,
    plot_score_histograms,
    read_ood_results,
    roc_curve,
    save_box_scores,
    scores_file,
    write_ood_results,
)

__all__ = [
    "BOX_SCORE_NAMES",
    "BoxScores",
    "EmptyBoxSetError",
    "OODScoreCollector",
    "OODSetResult",
    "OOD_RESULTS_FILE",
    "ProtocolResult",
    "ScoreThreshold",
    "derive_score_threshold",
    "evaluate_ood_protocol",
    "f1_optimal_thresholds",
    "format_table",
    "ground_truth_arrays",
    "keep_boxes",
    "load_box_scores",
    "match_detections",
    "ood_metrics",
    "plot_roc_curves",
    "plot_score_histograms",
    "read_ood_results",
    "roc_curve",
    "save_box_scores",
    "scores_file",
    "to_detectron2_results",
    "write_ood_results",
]
