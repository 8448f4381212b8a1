"""Evaluation of open-set detectors: OOD metrics over ID and OOD scores."""

from .ood_metrics import ood_metrics

__all__ = ["ood_metrics"]
