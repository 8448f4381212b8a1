"""Checking ``MODEL.WEIGHTS`` before a tool runs a model that would otherwise stay random."""

import os

__all__ = ["check_weights"]


def check_weights(weights: str) -> None:
    """Raise ``FileNotFoundError`` unless ``weights`` names a local file or a URL.

    URLs (``detectron2://...``, ``https://...``) are left to Detectron2's checkpointer, which
    downloads them.

    Args:
        weights (str): ``MODEL.WEIGHTS``.

    Raises:
        FileNotFoundError: ``weights`` is empty or names no local file (the message says what
            to pass instead).
    """
    if not weights:
        raise FileNotFoundError(
            "MODEL.WEIGHTS is empty: pass the trained model, e.g. "
            "MODEL.WEIGHTS output/vos/model_final.pth"
        )
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS file not found: {weights} (pass the path of a trained model, "
            "e.g. OUTPUT_DIR/model_final.pth)"
        )
