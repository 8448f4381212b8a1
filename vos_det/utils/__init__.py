"""Utilities: drawing detections."""
