"""The score registry under its documented name: ``vos_det.scores.register_score`` and the rest
of :mod:`vos_det.core.scores`, where it lives (Detectron2-free)."""

from .core.scores import *  # noqa: F401,F403
from .core.scores import __all__  # noqa: F401
