import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_detection import (  # noqa: E402
    register_tiny_dataset,
    register_tiny_ood_dataset,
    train_tiny_vos_run,
)


@pytest.fixture(scope="session")
def pretrained_weights(tmp_path_factory) -> str:
    """A tiny corpus-pretrained ResNet-18-GN (2 steps) under Detectron2's names: the
    MODEL.WEIGHTS with which tests train the pretrained benchmark configs (the real one takes
    minutes to pretrain)."""
    from vos_det.pretraining.trainer import PretrainingConfig
    from vos_det.pretraining.weights import ensure_pretrained

    config = PretrainingConfig(num_classes=3, steps=2, batch_size=6, validation_crops=6)
    return ensure_pretrained("tiny", str(tmp_path_factory.mktemp("pretrained")), config)


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory):
    """Names of a tiny train set (24 images) and test set (6 images) of coloured rectangles."""
    root = tmp_path_factory.mktemp("tiny")
    register_tiny_dataset("vos_tiny_train", root / "train", 24, seed=0)
    register_tiny_dataset("vos_tiny_test", root / "test", 6, seed=1)
    return "vos_tiny_train", "vos_tiny_test"


@pytest.fixture(scope="session")
def tiny_ood_dataset(tmp_path_factory):
    """Name of a tiny OOD set (4 images of circles)."""
    return register_tiny_ood_dataset(tmp_path_factory.mktemp("tiny_ood"))


@pytest.fixture(scope="session")
def trained_vos_run(tiny_datasets, tiny_ood_dataset, tmp_path_factory):
    """The one tiny VOS model of the session: ``(cfg, trainer)`` of ``train_tiny_vos_run``.

    6 steps, uncertainty loss from step 3; the evaluation hook after training ran
    ``VOSTrainer.test`` on the tiny ID test set and the tiny OOD set. ``cfg`` is frozen;
    ``cfg.OUTPUT_DIR`` holds ``config.yaml``, ``model_final.pth`` and ``inference/``.
    Shared by every test: only read it, write into other folders, and deep-copy
    ``trainer.model`` before a forward pass in training mode (it pushes into the queues).
    """
    output_dir = str(tmp_path_factory.mktemp("vos_run"))
    return train_tiny_vos_run(*tiny_datasets, tiny_ood_dataset, output_dir)
