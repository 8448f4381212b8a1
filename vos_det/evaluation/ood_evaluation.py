"""The one entry point of open-set evaluation: ID AP, then the OOD protocol, over a run's sets.

:class:`OODEvaluation` takes what each test set's evaluator returned (in any order of the
sets, each run once) and, when every set is in, saves the per-box scores, runs the protocol,
logs its table, writes ``ood_results.json`` and the plots, and returns Detectron2's results::

    evaluation = OODEvaluation.from_config(cfg)
    for name in cfg.DATASETS.TEST:
        evaluator = OODEvaluation.build_evaluator(cfg, name)
        evaluation.add(name, inference_on_dataset(model, build_test_loader(cfg, name), evaluator))
    results = evaluation.results()
"""

import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators
from detectron2.evaluation import print_csv_format
from detectron2.utils import comm

from .box_matching import EmptyBoxSetError, ScoreThreshold
from .detectron2_adapters import (
    ground_truth_arrays,
    is_ood_dataset,
    is_open_set_dataset,
    open_set_ground_truth,
    split_test_sets,
    to_detectron2_results,
)
from .output_folder import EvaluationFolder, EvaluationRun
from .protocol import derive_threshold, evaluate_ood_protocol
from .report import format_table, plot_roc_curves, plot_score_histograms
from .score_collector import BoxScores, OODScoreCollector

__all__ = ["OODEvaluation"]

logger = logging.getLogger(__name__)


class OODEvaluation:
    """Collects the evaluator outputs of one run's test sets and evaluates them together.

    The ID set gets COCO-style AP and, with OOD or mixed sets, the box-keeping threshold
    (``VOS.EVAL.SCORE_THRESHOLD``, or derived on its ground truth); every OOD set gets
    FPR95/AUROC/AUPR of each ``VOS.EVAL.SCORES`` against the ID set's kept boxes, and every
    mixed (open-set) set the open-set metrics of each score flagging at its ID threshold
    (:mod:`vos_det.evaluation.open_set`), all computed by the protocol ``VOS.EVAL.PROTOCOL``
    (:mod:`vos_det.evaluation.protocol`). Files go to an :class:`EvaluationFolder`
    (``OUTPUT_DIR/inference``).
    """

    def __init__(self, cfg: CfgNode, dataset_names: List[str], folder: EvaluationFolder):
        """
        Args:
            cfg (CfgNode): the config (``VOS.EVAL``).
            dataset_names (list[str]): the test sets, in order: one ID set with any OOD and
                mixed sets, or ID sets alone.
            folder (EvaluationFolder): where the files go.

        Raises:
            ValueError: if there are OOD or mixed sets but not exactly one ID set.
        """
        self.settings = cfg.VOS.EVAL
        self.dataset_names = list(dataset_names)
        self.id_names, self.ood_names, self.open_set_names = split_test_sets(self.dataset_names)
        self.folder = folder
        self._box_scores: Dict[str, BoxScores] = {}
        self._results: Dict[str, dict] = {}

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "OODEvaluation":
        """The evaluation of ``cfg.DATASETS.TEST`` into ``OUTPUT_DIR/inference``."""
        folder = EvaluationFolder(os.path.join(cfg.OUTPUT_DIR, "inference"))
        return cls(cfg, list(cfg.DATASETS.TEST), folder)

    @staticmethod
    def build_evaluator(
        cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None
    ) -> DatasetEvaluator:
        """The evaluator one test set needs: the score collector, plus COCO AP on an ID set.

        Args:
            cfg (CfgNode): the config (``VOS.EVAL.SCORES``).
            dataset_name (str): a registered test set.
            output_folder (str or None): where COCOEvaluator writes its files; default
                ``OUTPUT_DIR/inference/<dataset_name>``.

        Returns:
            DatasetEvaluator: :class:`OODScoreCollector` alone for an OOD or mixed set (the
            open-set metrics include the known AP); otherwise ``DatasetEvaluators`` of the
            collector and ``COCOEvaluator``.
        """
        collector = OODScoreCollector(dataset_name, cfg.VOS.EVAL.SCORES)
        if is_ood_dataset(dataset_name) or is_open_set_dataset(dataset_name):
            return collector
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return DatasetEvaluators([collector, COCOEvaluator(dataset_name, output_dir=output_folder)])

    def add(self, dataset_name: str, output: dict) -> None:
        """Record what a test set's :meth:`build_evaluator` evaluator returned.

        Args:
            dataset_name (str): one of the run's test sets.
            output (dict): the evaluator's result; ``{}`` on processes other than the main one
                (ignored there).
        """
        if dataset_name not in self.dataset_names:
            raise ValueError(f"{dataset_name} is not a test set of this evaluation.")
        if not comm.is_main_process():
            return
        output = dict(output)
        self._box_scores[dataset_name] = output.pop(OODScoreCollector.RESULT_KEY)
        self._results[dataset_name] = output

    def results(self) -> dict:
        """Evaluate what :meth:`add` recorded, write the files and return Detectron2's results.

        Returns:
            dict: on the main process ``{dataset: {task: {metric: float}}}`` (the ID set's
            "bbox" task from COCOEvaluator, the OOD tasks of :func:`to_detectron2_results`),
            unwrapped to the dataset's own dict when there is one test set, as Detectron2 does;
            ``{}`` on the other processes.
        """
        if not comm.is_main_process():
            return {}
        missing = [name for name in self.dataset_names if name not in self._results]
        if missing:
            raise ValueError(f"No evaluator output was added for {missing}.")
        results = OrderedDict((name, self._results[name]) for name in self.dataset_names)
        self.folder.clear_results()  # an earlier run's; must not be paired with the new scores
        for name in self.dataset_names:
            self.folder.save_box_scores(name, self._box_scores[name])
        open_set_truth = {
            name: open_set_ground_truth(name, DatasetCatalog.get(name))
            for name in self.open_set_names
        }
        for name, ground_truth in open_set_truth.items():
            self.folder.save_ground_truth(name, ground_truth)
        if self.ood_names or self.open_set_names:
            for name, tasks in self._evaluate_ood(open_set_truth).items():
                results[name].update(tasks)
        for name, result in results.items():
            logger.info("Evaluation results for %s in csv format:", name)
            print_csv_format(result)
        if len(results) == 1:
            return next(iter(results.values()))
        return results

    def _threshold(self, id_name: str) -> ScoreThreshold:
        """The box-keeping threshold: the configured one, or derived on the ID ground truth by
        the protocol's rule."""
        if self.settings.SCORE_THRESHOLD >= 0:
            return ScoreThreshold(float(self.settings.SCORE_THRESHOLD), "fixed")
        return derive_threshold(
            self._box_scores[id_name],
            ground_truth_arrays(DatasetCatalog.get(id_name)),
            self.settings.PROTOCOL,
            MetadataCatalog.get(id_name).get("thing_classes"),
        )

    def _evaluate_ood(
        self, open_set_truth: Dict[str, Dict[str, np.ndarray]]
    ) -> Dict[str, Dict[str, Dict[str, float]]]:
        """Run the protocol, log its table and write its files.

        Args:
            open_set_truth (dict): every mixed set's ground truth
                (:func:`open_set_ground_truth`).

        Returns:
            dict: the OOD tasks per dataset (:func:`to_detectron2_results`); empty when the
            protocol cannot run (a warning says why).
        """
        id_name = self.id_names[0]
        id_box_scores = self._box_scores[id_name]
        ood_box_scores = {name: self._box_scores[name] for name in self.ood_names}
        open_sets = {
            name: (self._box_scores[name], ground_truth)
            for name, ground_truth in open_set_truth.items()
        }
        try:
            result = evaluate_ood_protocol(
                id_name,
                id_box_scores,
                ood_box_scores,
                self._threshold(id_name),
                self.settings.SCORES,
                self.settings.TPR,
                self._results[id_name].get("bbox"),
                self.settings.PROTOCOL,
                open_sets,
            )
        except EmptyBoxSetError as e:
            logger.warning("No OOD metrics: %s", e)
            return {}
        run = EvaluationRun(result, id_box_scores, ood_box_scores, open_sets)
        logger.info(
            "OOD evaluation (%s vs %s):\n%s",
            id_name,
            ", ".join(self.ood_names + self.open_set_names),
            format_table({"": run.result}),
        )
        self.folder.write_results(run.result)
        if self.settings.SAVE_PLOTS:
            plots = plot_score_histograms(run, self.folder.plots_folder)
            plots += plot_roc_curves(run, self.folder.plots_folder)
            logger.info("Wrote %d OOD plots to %s.", len(plots), self.folder.plots_folder)
        return to_detectron2_results(run.result)
