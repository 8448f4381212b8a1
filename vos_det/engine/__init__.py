"""Training and evaluation loops."""

from .hooks import ProgressBar
from .parallel_runs import log_to_file, train_and_evaluate, train_and_evaluate_all
from .trainer import VOSTrainer

__all__ = [
    "ProgressBar",
    "VOSTrainer",
    "log_to_file",
    "train_and_evaluate",
    "train_and_evaluate_all",
]
