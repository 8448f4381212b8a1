"""The VOS trainer: Detectron2's ``DefaultTrainer`` with the evaluators VOS experiments need."""

import logging
import weakref
from typing import Optional

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..evaluation import OODEvaluation
from .checkpoint import AtomicCheckpointer
from .preflight import check_datasets

__all__ = ["VOSTrainer"]


class VOSTrainer(DefaultTrainer):
    """``DefaultTrainer`` that also trains with several processes on the CPU (gloo), and
    evaluates the in-distribution set (COCO-style AP) against OOD sets (FPR95, AUROC, AUPR)."""

    def __init__(self, cfg: CfgNode):
        """
        Args:
            cfg (CfgNode): the config; its datasets are checked first
                (:func:`~vos_det.engine.preflight.check_datasets`).
        """
        check_datasets(cfg)
        if comm.get_world_size() == 1 or cfg.MODEL.DEVICE != "cpu":
            super().__init__(cfg)
        else:
            self._init_for_cpu_processes(cfg)

    def _init_for_cpu_processes(self, cfg: CfgNode) -> None:
        """``DefaultTrainer.__init__`` except for the DDP wrapping, for several CPU processes.

        Detectron2 always passes ``device_ids=[local_rank]`` to DDP, which rejects it for a model
        on the CPU. This mirrors upstream's ``__init__`` line for line otherwise;
        tests/test_upstream_contracts.py fails when upstream's changes.
        """
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False, device_ids=None)
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

    def build_hooks(self) -> list:
        """Detectron2's hooks, saving checkpoints with an :class:`AtomicCheckpointer`."""
        self.checkpointer = AtomicCheckpointer(
            self.checkpointer.model, self.checkpointer.save_dir, trainer=weakref.proxy(self)
        )
        return super().build_hooks()

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None
    ) -> DatasetEvaluator:
        """The per-box score collector, plus COCO-style AP for ID sets (VOC ones too); see
        :meth:`OODEvaluation.build_evaluator`."""
        return OODEvaluation.build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg: CfgNode, model, evaluators=None) -> dict:
        """Evaluate ``model`` on ``DATASETS.TEST``: ID AP and, with OOD sets, the OOD protocol.

        Every set is run once; :class:`~vos_det.evaluation.OODEvaluation` evaluates them and
        writes ``OUTPUT_DIR/inference`` (``scores_<dataset>.npz``, ``ood_results.json``, plots).

        Args:
            cfg (CfgNode): the config.
            model (nn.Module): the model to evaluate, built with VOSROIHeads.
            evaluators (list[DatasetEvaluator] or None): when given, Detectron2's plain
                :meth:`DefaultTrainer.test` runs with them instead (no OOD protocol).

        Returns:
            dict: :meth:`OODEvaluation.results` (``{}`` on processes other than the main one).
        """
        if evaluators is not None:
            return super().test(cfg, model, evaluators)
        evaluation = OODEvaluation.from_config(cfg)
        for name in cfg.DATASETS.TEST:
            loader = cls.build_test_loader(cfg, name)
            evaluation.add(
                name, inference_on_dataset(model, loader, cls.build_evaluator(cfg, name))
            )
        return evaluation.results()
