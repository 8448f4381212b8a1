"""``MODEL.WEIGHTS``: checking it before a tool runs a model that would otherwise stay random,
loading it so that weights which do not fit the model are refused instead of half-loaded, and
resolving ``vos_det://pretrained/<name>``, the address of vos_det's cached pretrained weights
(:mod:`vos_det.pretraining.weights`), for Detectron2's checkpointer."""

import os
import pickle
from typing import Any, Iterable, Sequence

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.utils.file_io import PathManager
from torch import nn
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
    "OPTIONAL_STATE",
    "PretrainedWeightsHandler",
    "RecordingCheckpointer",
    "check_weights",
    "ensure_pretrained_weights",
    "load_fitting_weights",
    "resolve_weights",
]

#: Parameter prefixes of a VOSROIHeads detector that weights may lack: the VOS state (fitted by
#: tools/fit_feature_statistics.py, or initialised), the crop encoder (built with the
#: pretrained weights) and the layer-feature queues.
OPTIONAL_STATE = (
    "roi_heads.box_predictor.queues.",
    "roi_heads.box_predictor.crop_queues.",
    "roi_heads.box_predictor.uncertainty.",
    "roi_heads.box_predictor.feature_head.",
    "roi_heads.crop_encoder.",
    "roi_heads.layer_features.",
)


class RecordingCheckpointer(DetectionCheckpointer):
    """A ``DetectionCheckpointer`` that keeps the incompatible keys of its last ``load`` in
    ``incompatible`` (missing and unexpected keys, mismatched shapes) instead of logging them,
    for callers that decide themselves what may differ."""

    def _log_incompatible_keys(self, incompatible) -> None:
        self.incompatible = incompatible


def load_fitting_weights(
    model: nn.Module, weights: str, optional: Sequence[str] = OPTIONAL_STATE
) -> None:
    """Load ``weights`` into ``model`` for inference or fitting, refusing weights that do not fit.

    Detectron2's loader skips a parameter whose shape differs and leaves missing ones at their
    initialisation, with a warning: for training from pretrained weights that is what one wants,
    for running a trained model it gives a partly random one. Here either is an error.

    Args:
        model (nn.Module): the model built from the config the weights are meant for.
        weights (str): ``MODEL.WEIGHTS``.
        optional (Sequence[str]): prefixes of parameters the weights may lack.

    Raises:
        ValueError: naming the first parameter whose shape differs (both shapes), or the first
            missing one, and what to check; the feature queues' shapes when they differ; or the
            file when it cannot be read.
    """
    checkpointer = RecordingCheckpointer(model)
    try:
        checkpointer.load(weights, checkpointables=[])
    except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as error:
        # A damaged file. (Feature queues of another shape raise their own ValueError, which
        # names the config keys to set: it passes through.)
        raise ValueError(
            f"MODEL.WEIGHTS {weights} is not a readable checkpoint ({type(error).__name__}: "
            f"{error}); it may be truncated: write it again."
        ) from error
    incompatible = checkpointer.incompatible
    if incompatible.incorrect_shapes:
        key, in_weights, in_model = incompatible.incorrect_shapes[0]
        raise ValueError(
            f"MODEL.WEIGHTS {weights} does not fit the model: {key} has shape "
            f"{tuple(in_weights)} in the weights but {tuple(in_model)} in the model (first of "
            f"{len(incompatible.incorrect_shapes)} mismatched parameters). Use the config the "
            "weights were trained with (e.g. MODEL.ROI_HEADS.NUM_CLASSES, MODEL.FPN.OUT_CHANNELS, "
            "MODEL.ROI_BOX_HEAD.FC_DIM)."
        )
    missing = [key for key in incompatible.missing_keys if not key.startswith(tuple(optional))]
    if missing:
        raise ValueError(
            f"MODEL.WEIGHTS {weights} lacks {missing[0]} (and {len(missing) - 1} more parameters "
            "of the model): it holds another model; use the config it was trained with."
        )


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
