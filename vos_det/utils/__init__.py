"""Utilities: drawing detections, checking weights, setting up the tools' logs."""

from .logger import setup_vos_logger
from .visualize import draw_open_set_detections
from .weights import check_weights

__all__ = ["check_weights", "draw_open_set_detections", "setup_vos_logger"]
