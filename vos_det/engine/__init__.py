"""Training and evaluation loops."""

from .trainer import VOSTrainer

__all__ = ["VOSTrainer"]
