"""Drawing open-set detections: each box labelled with its class and ID-ness, green or red."""
from typing import Optional, Sequence

import numpy as np
import torch
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_open_set_detections"]

ID_COLOUR = (0.1, 0.8, 0.1)
OOD_COLOUR = (0.9, 0.1, 0.1)
MIN_SHORT_SIDE = 384  # pixels: small images are upscaled so the labels stay readable


def draw_open_set_detections(
    image_rgb: np.ndarray,
    instances: Instances,
    class_names: Sequence[str],
    ood_threshold: Optional[float] = None,
) -> np.ndarray:
    """Draw each detection's box and "<class> <prob %> id=<ID-ness>", green if ID, red if OOD.

    Args:
        image_rgb (ndarray): (H, W, 3) uint8 RGB image.
        instances (Instances): detections on the CPU with ``pred_boxes``, ``scores``,
            ``pred_classes``, ``id_scores`` and optionally ``is_ood``.
        class_names (Sequence[str]): names of the ID classes.
        ood_threshold (float or None): flag boxes with ``id_scores`` below it; when None the
            ``is_ood`` field decides (all ID when there is none).

    Returns:
        ndarray: (H', W', 3) uint8 RGB picture, upscaled so its short side is at least 384 px.
    """
    scale = max(1.0, MIN_SHORT_SIDE / min(image_rgb.shape[:2]))
    visualizer = Visualizer(image_rgb, scale=scale)
    if ood_threshold is not None:
        is_ood = instances.id_scores < ood_threshold
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
    return output.get_image()
