"""Worker run by ``detectron2.engine.launch`` in the two-process test (importable by spawn)."""

from pathlib import Path

import torch
from detectron2.utils import comm

from tiny_detection import register_tiny_dataset, tiny_cfg
from vos_det.engine import VOSTrainer


def train_and_dump_queues(data_root: str, output_dir: str, sync: bool) -> None:
    """Train a few steps on every worker and save each worker's queue buffers and parameters."""
    register_tiny_dataset("vos_tiny_train", Path(data_root) / "train", 24, seed=0)
    register_tiny_dataset("vos_tiny_test", Path(data_root) / "test", 6, seed=1)
    cfg = tiny_cfg("vos_tiny_train", "vos_tiny_test", output_dir, SYNC_QUEUES=sync)
    cfg.SOLVER.IMS_PER_BATCH = 4  # 2 images per worker
    cfg.SOLVER.MAX_ITER = 5
    cfg.DATASETS.TEST = ()  # no evaluation after training
    cfg.VOS.QUEUE_SIZE = 32  # larger than one step's features: wrap-around happens over steps
    trainer = VOSTrainer(cfg)
    trainer.train()
    predictor = trainer.model.module.roi_heads.box_predictor
    torch.save(
        {
            "queues": predictor.queues.state_dict(),
            "energy_weights": predictor.uncertainty.energy_weights.detach().clone(),
            "active": [v for v, _ in trainer.storage.history("vos/active").values()],
        },
        Path(output_dir) / f"rank{comm.get_rank()}.pt",
    )
