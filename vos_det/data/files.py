"""Where datasets live and how their JSON files are written (no Detectron2 import, so that the
Detectron2-free parts of vos_det, e.g. :mod:`vos_det.classification`, can use it)."""

import json
import os
from typing import Union

__all__ = ["default_datasets_root", "write_json"]


def default_datasets_root() -> str:
    """The datasets root: ``$DETECTRON2_DATASETS``, or "datasets" when it is not set."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def write_json(data: Union[dict, list], path: str, compact: bool = False) -> None:
    """Write JSON to a file, creating its parent folders.

    Args:
        data (dict or list): JSON-serialisable content.
        path (str): output file.
        compact (bool): leave out the spaces after "," and ":" (the bytes still depend only on
            ``data``).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    separators = (",", ":") if compact else None
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=separators)
