"""Silence the warnings every run printed that say nothing about the user's work.

Each filter matches one message exactly (module and category too), so any other warning of the
same libraries still shows:

* PyTorch >= 2.10 deprecates ``torch.jit.script``, which Detectron2 applies to a few helpers
  when imported;
* ``torch.meshgrid`` asks for an ``indexing`` argument that Detectron2's anchor generator
  does not pass (its behaviour is the documented default).
"""

import warnings

__all__ = ["ignore_known_warnings"]

_KNOWN = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script"),
    (UserWarning, r"torch\.meshgrid: in an upcoming release", r"torch\.functional"),
)


def ignore_known_warnings() -> None:
    """Install the filters (idempotent: ``warnings`` drops duplicate filters)."""
    for category, message, module in _KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
