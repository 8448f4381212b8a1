"""Training and evaluation loops."""

from .hooks import ProgressBar
from .trainer import VOSTrainer

__all__ = ["ProgressBar", "VOSTrainer"]
