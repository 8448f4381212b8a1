"""Pretrained weights: named, built once on first use, cached with a manifest.

A named pretraining (:data:`PRETRAINED_MODELS`) is built by :func:`ensure_pretrained` into
``<root>/<name>/`` (root: ``$VOS_DET_PRETRAINED``, default ``pretrained``):

* ``model_final.pth``: ``{"model": state}``, the ResNet's parameters under Detectron2's names
  (``backbone.bottom_up.*``, :func:`~.resnet.export_to_detectron2`), so that ``MODEL.WEIGHTS``
  loads them into a detector with no missing or unexpected backbone key;
* ``pretraining.json``: the run's loss history, held-out accuracy, seconds and threads;
* ``MANIFEST.json``: the :class:`~.trainer.PretrainingConfig` and the sha256 of both files.

A folder whose manifest records another config, or whose files do not match their checksums (a
half-written or damaged cache), is built again, never loaded. Building goes into a temporary
sibling folder that then takes the folder's place, under a lock, so concurrent tools neither see
half a cache nor build it twice. Configs name the weights as ``vos_det://pretrained/<name>``
(:func:`pretrained_uri`); the Detectron2 side of vos_det resolves that address.
"""

import dataclasses
import json
import logging
import os
import time
from typing import Callable, Dict, Optional

import torch
from tqdm import tqdm

from ..core.cached_folder import MANIFEST, exclusive_lock, is_intact, replace_folder, write_manifest
from .resnet import ResNetGN, export_to_detectron2
from .trainer import PretrainingConfig, evaluate_pretrained, pretrain_backbone

__all__ = [
    "PRETRAINED_MODELS",
    "PRETRAINED_SCHEME",
    "RECORD_FILE",
    "WEIGHTS_FILE",
    "ensure_pretrained",
    "is_built",
    "load_pretrained_backbone",
    "pretrained_folder",
    "pretrained_name",
    "pretrained_root",
    "pretrained_uri",
    "pretrain_with_progress",
]

logger = logging.getLogger(__name__)

#: The address prefix configs use for cached pretrained weights (``MODEL.WEIGHTS``).
PRETRAINED_SCHEME = "vos_det://pretrained/"
WEIGHTS_FILE = "model_final.pth"
RECORD_FILE = "pretraining.json"
_GENERATOR_VERSION = 1
_OWNED_ENTRIES = {WEIGHTS_FILE, RECORD_FILE, MANIFEST}

#: The named pretrainings. ``synthetic_R18_GN``: the ResNet-18-GN of
#: ``configs/Synthetic/Base-Synthetic.yaml``, 64 corpus classes, 32 px crops, 1600 steps of 128.
PRETRAINED_MODELS: Dict[str, PretrainingConfig] = {"synthetic_R18_GN": PretrainingConfig()}


def pretrained_root() -> str:
    """The cache root: ``$VOS_DET_PRETRAINED``, or "pretrained" when it is not set."""
    return os.path.expanduser(os.getenv("VOS_DET_PRETRAINED", "pretrained"))


def pretrained_uri(name: str) -> str:
    """Returns: the address configs use for the named weights (``vos_det://pretrained/<name>``)."""
    return PRETRAINED_SCHEME + name


def pretrained_name(weights: str) -> Optional[str]:
    """Returns: the name in a ``vos_det://pretrained/<name>`` address, None for other paths."""
    if not weights.startswith(PRETRAINED_SCHEME):
        return None
    return weights[len(PRETRAINED_SCHEME) :].rstrip("/")


def pretrained_folder(name: str, root: Optional[str] = None) -> str:
    """Returns: the cache folder of the named weights (absolute)."""
    return os.path.abspath(os.path.join(root or pretrained_root(), name))


def _config_of(name: str) -> PretrainingConfig:
    if name not in PRETRAINED_MODELS:
        raise KeyError(
            f"Unknown pretrained weights {name!r}; known: {', '.join(sorted(PRETRAINED_MODELS))}."
        )
    return PRETRAINED_MODELS[name]


def _manifest_header(config: PretrainingConfig) -> dict:
    return {
        "generator": "vos_det.pretraining",
        "generator_version": _GENERATOR_VERSION,
        "config": dataclasses.asdict(config),
    }


def is_built(name: str, root: Optional[str] = None) -> bool:
    """Whether the named weights are cached, intact, with their current config."""
    return is_intact(pretrained_folder(name, root), _manifest_header(_config_of(name)))


def ensure_pretrained(
    name: str,
    root: Optional[str] = None,
    config: Optional[PretrainingConfig] = None,
    on_step: Optional[Callable[[int, float], None]] = None,
    force: bool = False,
) -> str:
    """The path of the named weights' ``model_final.pth``, pretraining them first when they are
    not cached intact with their config (or when ``force``).

    Args:
        name (str): a key of :data:`PRETRAINED_MODELS`, or any name when ``config`` is given.
        root (str or None): cache root (default :func:`pretrained_root`).
        config (PretrainingConfig or None): the pretraining (default: the named one).
        on_step (callable or None): progress callback of :func:`~.trainer.pretrain_backbone`.
        force (bool): pretrain again even if the cache is intact.

    Returns:
        str: absolute path of the weights file.

    Raises:
        KeyError: an unknown name without ``config``.
        FileExistsError: the folder holds files that are not a weights cache.
    """
    config = config or _config_of(name)
    folder = pretrained_folder(name, root)
    header = _manifest_header(config)
    if force or not is_intact(folder, header):
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        with exclusive_lock(parent):
            if force or not is_intact(folder, header):  # another process may have just built it
                if os.path.exists(os.path.join(folder, MANIFEST)):
                    logger.warning(
                        "The pretrained weights in %s are damaged or were made with another "
                        "config: pretraining them again.",
                        folder,
                    )
                replace_folder(
                    folder,
                    lambda staging: _build(staging, config, header, on_step),
                    _OWNED_ENTRIES,
                    "pretrained weights",
                )
    return os.path.join(folder, WEIGHTS_FILE)


def _build(
    folder: str,
    config: PretrainingConfig,
    header: dict,
    on_step: Optional[Callable[[int, float], None]],
) -> None:
    """Pretrain and write the weights, their record and the manifest into a new ``folder``."""
    os.makedirs(folder)
    start = time.perf_counter()
    result = pretrain_backbone(config, on_step)
    seconds = time.perf_counter() - start
    accuracy = evaluate_pretrained(result, config)
    torch.save({"model": export_to_detectron2(result.backbone)}, os.path.join(folder, WEIGHTS_FILE))
    record = {
        "validation_accuracy": accuracy,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "history": result.history,
    }
    with open(os.path.join(folder, RECORD_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    write_manifest(folder, header, [WEIGHTS_FILE, RECORD_FILE])
    logger.info(
        "Pretrained %s in %.0f s: %.1f%% held-out accuracy on %d corpus classes.",
        folder,
        seconds,
        accuracy,
        config.num_classes,
    )


def pretrain_with_progress(
    name: str, root: Optional[str] = None, force: bool = False, threads: Optional[int] = None
) -> str:
    """:func:`ensure_pretrained` with a progress bar (steps, loss, ETA) when it pretrains.

    Args:
        name (str): a key of :data:`PRETRAINED_MODELS`.
        root (str or None): cache root (default :func:`pretrained_root`).
        force (bool): pretrain again even if cached.
        threads (int or None): torch threads while pretraining (default: every core); the
            previous setting is restored afterwards.

    Returns:
        str: the weights file.
    """
    config = _config_of(name)
    if not force and is_built(name, root):
        return ensure_pretrained(name, root)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    logger.info("Pretraining %s (%s), once: later runs reuse it.", name, config)
    try:
        with tqdm(total=config.steps, desc=f"pretrain {name}", unit="step", dynamic_ncols=True) as bar:

            def on_step(step: int, loss: float) -> None:
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update(1)

            return ensure_pretrained(name, root, on_step=on_step, force=force)
    finally:
        torch.set_num_threads(previous)


def load_pretrained_backbone(path: str, depth: int = 18) -> ResNetGN:
    """A :class:`ResNetGN` with the backbone of a weights file (ours, or any Detectron2
    checkpoint of a ResNet-GN FPN detector).

    Raises:
        ValueError: naming the file, if it is not a readable checkpoint.
        KeyError, ValueError: naming the first missing, unexpected or mis-shaped parameter.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise ValueError(f"{path} is not a readable checkpoint ({error}).") from error
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict.")
    backbone = ResNetGN(depth)
    backbone.load_detectron2_state(state)
    return backbone
