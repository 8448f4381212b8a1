"""Drawing open-set detections: each box labelled with its class and ID-ness, green or red."""

from typing import Optional, Sequence

import numpy as np
import torch
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_open_set_detections"]

ID_COLOUR = (0.1, 0.8, 0.1)
OOD_COLOUR = (0.9, 0.1, 0.1)
MIN_SHORT_SIDE = 384  # pixels: smaller images are upscaled so that the labels stay readable
MAX_LONG_SIDE = 4096  # pixels: the upscaling stops there (thin images, e.g. 4 x 1000)
MIN_FONT_POINTS = 14.0  # Visualizer's default font size in the drawn picture, at least


def _font_size_scale(height: int, width: int, scale: float) -> float:
    """The ``font_size_scale`` that brings Visualizer's default font to ``MIN_FONT_POINTS``.

    Visualizer's default font size is ``max(sqrt(H * W) // 90, 10 // scale)``, drawn ``scale``
    times larger; on small upscaled images that gives labels of a few points only.
    """
    default = max(np.sqrt(height * width) // 90, 10 // scale) * scale
    return max(1.0, MIN_FONT_POINTS / default)


def _drawing_scale(height: int, width: int) -> float:
    """How much to enlarge an image so that its short side reaches ``MIN_SHORT_SIDE``, without
    taking the long side past ``MAX_LONG_SIDE``; images are never shrunk.

    Args:
        height (int): image height in pixels (> 0).
        width (int): image width in pixels (> 0).

    Returns:
        float: the scale, >= 1.
    """
    return max(1.0, min(MIN_SHORT_SIDE / min(height, width), MAX_LONG_SIDE / max(height, width)))


def draw_open_set_detections(
    image_rgb: np.ndarray,
    instances: Instances,
    class_names: Sequence[str],
    ood_threshold: Optional[float] = None,
) -> np.ndarray:
    """Draw each detection's box and "<class> <prob %> id=<ID-ness>", green if ID, red if OOD.

    Args:
        image_rgb (ndarray): (H, W, 3) uint8 RGB image.
        instances (Instances): R detections on the CPU with ``pred_boxes``, ``scores``,
            ``pred_classes``, ``id_scores`` and optionally ``is_ood``.
        class_names (Sequence[str]): names of the ID classes, indexed by ``pred_classes``.
        ood_threshold (float or None): flag the boxes whose ``id_scores`` fall below it or are
            NaN; when None the ``is_ood`` field decides, and without that field every box is ID.

    Returns:
        ndarray: (H', W', 3) uint8 RGB picture, upscaled by ``_drawing_scale``: its short side
        is at least ``MIN_SHORT_SIDE`` (384) pixels unless its long side would pass
        ``MAX_LONG_SIDE`` (4096); H' = H and W' = W for larger images.
    """
    height, width = image_rgb.shape[:2]
    scale = _drawing_scale(height, width)
    visualizer = Visualizer(
        image_rgb, scale=scale, font_size_scale=_font_size_scale(height, width, scale)
    )
    if ood_threshold is not None:
        is_ood = ~(instances.id_scores >= ood_threshold)  # NaN: unknown, never ID
    elif instances.has("is_ood"):
        is_ood = instances.is_ood
    else:
        is_ood = torch.zeros(len(instances), dtype=torch.bool)
    labels = [
        f"{class_names[int(c)]} {100 * float(p):.0f}% id={float(s):.2f}"
        for c, p, s in zip(instances.pred_classes, instances.scores, instances.id_scores)
    ]
    colours = [OOD_COLOUR if bool(flag) else ID_COLOUR for flag in is_ood]
    output = visualizer.overlay_instances(
        boxes=instances.pred_boxes.tensor.numpy(), labels=labels, assigned_colors=colours
    )
    _keep_labels_inside(output)
    return output.get_image()


def _keep_labels_inside(output) -> None:
    """Move every label that sticks out of the picture back in, horizontally (Detectron2's
    Visualizer starts a label at its box's left edge, so boxes near the right edge lose the end
    of theirs)."""
    renderer = output.canvas.get_renderer()
    width = output.width * output.scale  # display pixels; one image pixel is ``scale`` of them
    for text in output.ax.texts:
        extent = text.get_window_extent(renderer=renderer)
        shift = max(0.0, extent.x1 - width) - max(0.0, -extent.x0)
        if shift:
            x, y = text.get_position()
            text.set_position((x - shift / output.scale, y))
