"""Silence the warnings every run printed that say nothing about the user's work.

Each filter matches one message exactly (module and category too), so any other warning of the
same libraries still shows:

* PyTorch >= 2.10 deprecates ``torch.jit.script``, which Detectron2 applies to a few helpers
  when imported;
* ``torch.meshgrid`` asks for an ``indexing`` argument that Detectron2's anchor generator
  does not pass (its behaviour is the documented default);
* ``torch.fx`` logs that ``is_fx_tracing`` changed meaning when Detectron2 asks it during
  inference.
"""

import logging
import warnings

__all__ = ["ignore_known_warnings"]

_KNOWN = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script"),
    (UserWarning, r"torch\.meshgrid: in an upcoming release", r"torch\.functional"),
)


_FX_LOGGER = "torch.fx._symbolic_trace"
_FX_MESSAGE = "is_fx_tracing will return true for both fx.symbolic_trace and torch.export"


def _is_not_fx_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_FX_MESSAGE)


def ignore_known_warnings() -> None:
    """Install the filters (idempotent: duplicates are dropped or not added)."""
    for category, message, module in _KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    fx_logger = logging.getLogger(_FX_LOGGER)
    if _is_not_fx_notice not in fx_logger.filters:
        fx_logger.addFilter(_is_not_fx_notice)
