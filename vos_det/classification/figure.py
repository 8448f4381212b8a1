"""A picture grid of test images with their ID-ness scores, like the VOS article's figure.

Each row is one test set; each tile shows an image (enlarged), framed in green when its score is
at or above the threshold (kept as ID) and in red when it falls below (flagged OOD), with the
score written under it.
"""

from typing import Sequence, Tuple

import cv2
import numpy as np

__all__ = ["score_grid"]

_GREEN = (40, 170, 60)
_RED = (215, 40, 40)
_FRAME = 3  # px
_CAPTION = 16  # px of the score strip under a tile
_TITLE = 20  # px of the title strip above a row
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def score_grid(
    rows: Sequence[Tuple[str, np.ndarray, np.ndarray]], threshold: float, scale: int = 3
) -> np.ndarray:
    """Compose the grid.

    Args:
        rows (Sequence[tuple[str, np.ndarray, np.ndarray]]): per row (title, images [n, H, W, 3]
            uint8 RGB, scores [n] floats); every row has the same image size.
        threshold (float): scores >= threshold are framed green, the others red.
        scale (int): integer enlargement of the images (nearest neighbour).

    Returns:
        np.ndarray: [H', W', 3] uint8 RGB picture.
    """
    if not rows:
        raise ValueError("score_grid needs at least one row")
    tiles_per_row = max(len(images) for _, images, _ in rows)
    height, width = rows[0][1].shape[1:3]
    tile_w, tile_h = width * scale + 2 * _FRAME, height * scale + 2 * _FRAME + _CAPTION
    picture_rows = []
    for title, images, scores in rows:
        row = np.full((_TITLE + tile_h, tiles_per_row * tile_w, 3), 255, dtype=np.uint8)
        cv2.putText(row, title, (4, _TITLE - 6), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for index, (image, score) in enumerate(zip(images, scores)):
            colour = _GREEN if score >= threshold else _RED
            x0, y0 = index * tile_w, _TITLE
            row[y0 : y0 + tile_h - _CAPTION, x0 : x0 + tile_w] = colour
            enlarged = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            row[
                y0 + _FRAME : y0 + _FRAME + height * scale,
                x0 + _FRAME : x0 + _FRAME + width * scale,
            ] = enlarged
            text_y = y0 + tile_h - 4
            cv2.putText(
                row,
                f"{score:.2f}",
                (x0 + tile_w // 2 - 14, text_y),
                _FONT,
                0.42,
                colour,
                1,
                cv2.LINE_AA,
            )
        picture_rows.append(row)
    return np.concatenate(picture_rows, axis=0)
