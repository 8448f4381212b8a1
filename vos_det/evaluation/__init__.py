"""Open-set evaluation: per-box score collection, the VOS paper's OOD protocol, its files.

The entry point is :class:`OODEvaluation` (what ``VOSTrainer.test`` runs); an evaluation
folder is read back with :class:`EvaluationFolder`. The building blocks live in the submodules:
``ood_metrics`` (FPR95, AUROC, AUPR, ROC), ``box_matching`` (the box-keeping threshold),
``protocol`` (ID vs OOD boxes), ``detectron2_adapters``, ``output_folder`` and ``report``.
"""

from .ood_evaluation import OODEvaluation
from ..core.ood_metrics import ood_metrics
from .output_folder import EvaluationFolder, EvaluationRun
from .protocol import ProtocolResult
from .report import format_table
from .score_collector import BoxScores, OODScoreCollector

__all__ = [
    "BoxScores",
    "EvaluationFolder",
    "EvaluationRun",
    "OODEvaluation",
    "OODScoreCollector",
    "ProtocolResult",
    "format_table",
    "ood_metrics",
]
