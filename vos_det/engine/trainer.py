"""The VOS trainer: Detectron2's ``DefaultTrainer`` with the evaluators VOS experiments need."""

import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict, List, Optional

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..evaluation import (
    OOD_RESULTS_FILE,
    BoxScores,
    EmptyBoxSetError,
    OODScoreCollector,
    ScoreThreshold,
    derive_score_threshold,
    evaluate_ood_protocol,
    format_table,
    ground_truth_arrays,
    plot_roc_curves,
    plot_score_histograms,
    save_box_scores,
    scores_file,
    split_id_and_ood,
    to_detectron2_results,
    write_ood_results,
)

logger = logging.getLogger(__name__)

__all__ = ["VOSTrainer"]


class VOSTrainer(DefaultTrainer):
    """``DefaultTrainer`` that also trains with several processes on the CPU (gloo), and
    evaluates the in-distribution set (COCO-style AP) against OOD sets (FPR95, AUROC, AUPR)."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__, except for the DDP wrapping: Detectron2 always passes
        # `device_ids=[local_rank]`, which DDP rejects for a model on the CPU.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_gpu = next(model.parameters()).device.type == "cuda"
        model = create_ddp_model(
            model,
            broadcast_buffers=False,
            device_ids=[comm.get_local_rank()] if on_gpu else None,
        )
        trainer_class = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None):
        """The per-box score collector, plus COCO-style AP for ID sets (VOC ones too).

        Args:
            cfg (CfgNode): the config.
            dataset_name (str): a registered test set.
            output_folder (str or None): where COCOEvaluator writes its files; default
                ``OUTPUT_DIR/inference/<dataset_name>``.

        Returns:
            DatasetEvaluator: for an OOD set (metadata ``is_ood``) the :class:`OODScoreCollector`
            alone; otherwise ``DatasetEvaluators`` of the collector and ``COCOEvaluator``.
        """
        collector = OODScoreCollector(dataset_name)
        if MetadataCatalog.get(dataset_name).get("is_ood", False):
            return collector
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return DatasetEvaluators([collector, COCOEvaluator(dataset_name, output_dir=output_folder)])

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate ``model`` on ``DATASETS.TEST``: ID AP and, with OOD sets, the OOD protocol.

        Every set is run once. The ID set (metadata ``is_ood`` False; exactly one when OOD sets
        are present) gets COCO-style AP and, with OOD sets, the box-keeping threshold
        (``VOS.EVAL.SCORE_THRESHOLD``, or derived on its ground truth); every OOD set gets
        FPR95/AUROC/AUPR of each ``VOS.EVAL.SCORES`` against the ID set's kept boxes. Written to
        ``OUTPUT_DIR/inference``: ``scores_<dataset>.npz`` for every set and, with OOD sets,
        ``ood_results.json`` and (``VOS.EVAL.SAVE_PLOTS``) PNG plots in ``ood_plots/``.

        Args:
            cfg (CfgNode): the config.
            model (nn.Module): the model to evaluate, built with VOSROIHeads.
            evaluators (list[DatasetEvaluator] or None): when given, Detectron2's plain
                :meth:`DefaultTrainer.test` runs with them instead (no OOD protocol).

        Returns:
            dict: on the main process ``{dataset: {task: {metric: float}}}`` (the ID set's
            "bbox" task from COCOEvaluator, the OOD tasks of :func:`to_detectron2_results`);
            unwrapped to the dataset's own dict when there is one test set, as Detectron2 does.
            ``{}`` on the other processes.
        """
        if evaluators is not None:
            return super().test(cfg, model, evaluators)
        id_names, ood_names = split_id_and_ood(cfg.DATASETS.TEST)
        box_scores, results = {}, OrderedDict()
        for name in cfg.DATASETS.TEST:
            evaluator = cls.build_evaluator(cfg, name)
            output = inference_on_dataset(model, cls.build_test_loader(cfg, name), evaluator)
            if comm.is_main_process():
                box_scores[name] = output.pop(OODScoreCollector.RESULT_KEY)
                results[name] = output
        if not comm.is_main_process():
            return {}
        folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        stale = os.path.join(folder, OOD_RESULTS_FILE)
        if os.path.exists(stale):  # an earlier run's; must not be paired with the new scores
            os.remove(stale)
        for name, arrays in box_scores.items():
            save_box_scores(scores_file(folder, name), arrays)
        if ood_names:
            cls._evaluate_ood(cfg, folder, id_names[0], ood_names, box_scores, results)
        for name, result in results.items():
            logger.info("Evaluation results for %s in csv format:", name)
            print_csv_format(result)
        if len(results) == 1:
            return next(iter(results.values()))
        return results

    @classmethod
    def _evaluate_ood(
        cls,
        cfg,
        folder: str,
        id_name: str,
        ood_names: List[str],
        box_scores: Dict[str, BoxScores],
        results: Dict[str, dict],
    ) -> None:
        """Run the OOD protocol, log its table, write its files and add it to ``results``.

        Args:
            cfg (CfgNode): the config (``VOS.EVAL``).
            folder (str): the evaluation folder.
            id_name (str): the ID set.
            ood_names (list[str]): the OOD sets.
            box_scores (dict[str, BoxScores]): every set's per-box arrays.
            results (dict[str, dict]): Detectron2 results per set, updated in place.
        """
        settings = cfg.VOS.EVAL
        try:
            if settings.SCORE_THRESHOLD >= 0:
                threshold = ScoreThreshold(float(settings.SCORE_THRESHOLD), "fixed")
            else:
                threshold = derive_score_threshold(
                    box_scores[id_name],
                    ground_truth_arrays(DatasetCatalog.get(id_name)),
                    MetadataCatalog.get(id_name).get("thing_classes"),
                )
            ood_box_scores = {name: box_scores[name] for name in ood_names}
            result = evaluate_ood_protocol(
                id_name,
                box_scores[id_name],
                ood_box_scores,
                threshold,
                settings.SCORES,
                settings.TPR,
                results[id_name].get("bbox"),
            )
        except EmptyBoxSetError as e:
            logger.warning("No OOD metrics: %s", e)
            return
        logger.info(
            "OOD evaluation (%s vs %s):\n%s",
            id_name,
            ", ".join(ood_names),
            format_table({"": result}),
        )
        write_ood_results(os.path.join(folder, OOD_RESULTS_FILE), result)
        if settings.SAVE_PLOTS:
            plots = plot_score_histograms(folder, result, box_scores[id_name], ood_box_scores)
            plots += plot_roc_curves(folder, result, box_scores[id_name], ood_box_scores)
            logger.info("Wrote %d OOD plots to %s.", len(plots), os.path.dirname(plots[0]))
        for name, tasks in to_detectron2_results(result).items():
            results[name].update(tasks)
