"""Folders generated once and then reused: manifest check, locking, atomic replacement.

A generated folder holds a ``MANIFEST.json``: a header saying what generated it and with which
parameters, and under ``"files"`` the sha256 of every file written. It is reused while its header
is the expected one and every listed file still has its checksum; otherwise it is written again
into a temporary sibling folder that then takes its place, so a reader never sees half a folder.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from typing import AbstractSet, Callable, Iterator, Mapping, Sequence

import numpy as np

from .files import write_json

__all__ = [
    "MANIFEST",
    "check_integer_fields",
    "exclusive_lock",
    "is_intact",
    "replace_folder",
    "write_manifest",
]

MANIFEST = "MANIFEST.json"


def is_intact(root: str, header: dict) -> bool:
    """Whether ``root`` was generated as ``header`` says, with every file unchanged since.

    Args:
        root (str): generated folder.
        header (dict): expected manifest entries, e.g. generator version and parameters.

    Returns:
        bool: True if the manifest holds every entry of ``header`` with the same value and every
        file it lists has its recorded sha256; False if anything is missing or unreadable.
    """
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        if any(manifest.get(key) != value for key, value in header.items()):
            return False
        return all(
            _sha256(os.path.join(root, relative)) == digest
            for relative, digest in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def write_manifest(folder: str, header: dict, files: Sequence[str]) -> None:
    """Write ``folder``'s manifest: ``header``, then the sha256 of each file under ``"files"``.

    Args:
        folder (str): generated folder.
        header (dict): JSON-serialisable entries checked by :func:`is_intact`.
        files (Sequence[str]): the files written, relative to ``folder`` with "/" separators.
    """
    digests = {relative: _sha256(os.path.join(folder, relative)) for relative in files}
    write_json({**header, "files": digests}, os.path.join(folder, MANIFEST), compact=True)


@contextlib.contextmanager
def exclusive_lock(folder: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on an existing folder inside the block (no lock file)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def replace_folder(
    root: str, write: Callable[[str], None], owned_entries: AbstractSet[str], content: str
) -> None:
    """Write a folder into a temporary sibling of ``root``, then put it in ``root``'s place.

    Args:
        root (str): folder to (re)write, absolute; it must be missing or hold only
            ``owned_entries``.
        write (Callable[[str], None]): writes the content into the (missing) folder it is given.
        owned_entries (AbstractSet[str]): names directly under ``root`` that ``write`` creates.
        content (str): what the folder holds, for error messages (e.g. "the synthetic benchmark").

    Raises:
        FileExistsError: if ``root`` is not a folder, or holds entries ``write`` does not create.
    """
    if os.path.isdir(root):
        foreign = sorted(set(os.listdir(root)) - owned_entries)
        if foreign:
            raise FileExistsError(
                f"{root} must hold {content}, but it contains other files "
                f"({', '.join(foreign[:5])}); choose a new or empty folder."
            )
    elif os.path.exists(root):
        raise FileExistsError(f"{root} exists and is not a folder; choose another path.")
    staging, retired = f"{root}.tmp-{os.getpid()}", f"{root}.old-{os.getpid()}"
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        write(staging)
        if os.path.isdir(root):
            os.rename(root, retired)
        os.rename(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def _sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_integer_fields(spec: object, minimum: Mapping[str, int]) -> None:
    """Check that every field of a frozen dataclass ``spec`` (the parameters a folder is
    generated from) is an integer at or above its minimum (``minimum``, default 1), and make
    numpy integers plain ints.

    Raises:
        ValueError: naming the first field that is not an integer or is below its minimum.
    """
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{field.name} must be an integer, got {value!r}.")
        lowest = minimum.get(field.name, 1)
        if value < lowest:
            raise ValueError(f"{field.name} must be >= {lowest}, got {value}.")
        object.__setattr__(spec, field.name, int(value))
