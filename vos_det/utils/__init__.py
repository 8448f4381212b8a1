"""Utilities: drawing detections."""

from .visualize import draw_open_set_detections

__all__ = ["draw_open_set_detections"]
