"""``MODEL.WEIGHTS``: checking it before a tool runs a model that would otherwise stay random,
and resolving ``vos_det://pretrained/<name>``, the address of vos_det's cached pretrained
weights (:mod:`vos_det.pretraining.weights`), for Detectron2's checkpointer."""

import os
from typing import Any, Iterable

from detectron2.config import CfgNode
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from ..pretraining.weights import (
    PRETRAINED_MODELS,
    PRETRAINED_SCHEME,
    WEIGHTS_FILE,
    is_built,
    pretrain_with_progress,
    pretrained_folder,
    pretrained_name,
)

__all__ = [
    "PretrainedWeightsHandler",
    "check_weights",
    "ensure_pretrained_weights",
    "resolve_weights",
]


class PretrainedWeightsHandler(PathHandler):
    """Resolves ``vos_det://pretrained/<name>`` to the cached weights file, and refuses, naming
    the command that builds them, when they are not built (or not intact)."""

    def _get_supported_prefixes(self):
        return [PRETRAINED_SCHEME]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        return resolve_weights(path)

    def _open(self, path: str, mode: str = "r", **kwargs: Any):
        return PathManager.open(self._get_local_path(path), mode, **kwargs)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        name = pretrained_name(path)
        return name in PRETRAINED_MODELS and is_built(name)

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path)


def resolve_weights(weights: str) -> str:
    """The local file of ``vos_det://pretrained/<name>`` weights; other paths unchanged.

    Raises:
        FileNotFoundError: unknown name, or weights not built yet (the message names the command
            that builds them).
    """
    name = pretrained_name(weights)
    if name is None:
        return weights
    if name not in PRETRAINED_MODELS:
        raise FileNotFoundError(
            f"{weights}: no pretrained weights are named {name!r}; known: "
            f"{', '.join(PRETRAINED_SCHEME + n for n in sorted(PRETRAINED_MODELS))}"
        )
    if not is_built(name):
        raise FileNotFoundError(
            f"{weights} is not built yet (or its cache {pretrained_folder(name)} is damaged): run "
            f"`make pretrain` (tools/pretrain_backbone.py --name {name}); make demo and make "
            "benchmark build it on first use"
        )
    return os.path.join(pretrained_folder(name), WEIGHTS_FILE)


def ensure_pretrained_weights(cfgs: Iterable[CfgNode]) -> None:
    """Pretrain, once, the ``vos_det://pretrained/<name>`` weights that the configs name
    (``MODEL.WEIGHTS``, ``VOS.CROP_FEATURES.WEIGHTS``) and the cache lacks: what the tools that
    train the embedded benchmark do first (with a progress bar, on every core)."""
    names = {
        pretrained_name(weights)
        for cfg in cfgs
        for weights in (cfg.MODEL.WEIGHTS, cfg.VOS.CROP_FEATURES.WEIGHTS)
    }
    for name in sorted(n for n in names if n in PRETRAINED_MODELS):
        if not is_built(name):
            pretrain_with_progress(name)


def check_weights(weights: str) -> None:
    """Raise ``FileNotFoundError`` unless ``weights`` names a local file, built pretrained weights
    (``vos_det://pretrained/<name>``) or a URL.

    Other URLs (``detectron2://...``, ``https://...``) are left to Detectron2's checkpointer,
    which downloads them.

    Args:
        weights (str): ``MODEL.WEIGHTS``.

    Raises:
        FileNotFoundError: ``weights`` is empty or names no local file or built weights (the
            message says what to pass instead).
    """
    if not weights:
        raise FileNotFoundError(
            "MODEL.WEIGHTS is empty: pass the trained model, e.g. "
            "MODEL.WEIGHTS output/vos/model_final.pth"
        )
    if pretrained_name(weights) is not None:
        resolve_weights(weights)
    elif "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS file not found: {weights} (pass the path of a trained model, "
            "e.g. OUTPUT_DIR/model_final.pth)"
        )


PathManager.register_handler(PretrainedWeightsHandler())
