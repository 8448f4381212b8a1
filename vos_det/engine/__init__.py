"""Training and evaluation loops: ``VOSTrainer``, its checks before training, checkpoints."""

from .hooks import ProgressBar
from .trainer import VOSTrainer

__all__ = ["ProgressBar", "VOSTrainer"]
