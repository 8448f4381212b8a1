"""Where datasets live, how JSON files are written, and files replaced only once complete (no
Detectron2 import, so that the Detectron2-free parts of vos_det, e.g.
:mod:`vos_det.classification`, can use it)."""

import contextlib
import json
import os
import tempfile
from typing import IO, Iterator, Union

__all__ = ["atomic_write", "default_datasets_root", "write_json"]


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


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path``, else vanishes.

    Args:
        path (str): the final file; its folder is created.
        mode (str): "w" (text, UTF-8) or "wb".

    Yields:
        file: the open temporary file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(descriptor, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
