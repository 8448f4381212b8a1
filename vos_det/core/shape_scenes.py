"""Procedural shape scenes: the drawing behind the embedded synthetic benchmark.

A scene is a textured, cluttered background (colour gradient, smooth blotches, pixel noise, a few
thin lines and small dots that are not objects) with one to four filled shapes of random size,
colour and rotation drawn on top; later shapes may partially hide earlier ones, but none is more
than 60% hidden.

* ID classes: circle, square, triangle (``SYNTHETIC_ID_CLASSES``).
* OOD classes: star, cross, ring, crescent (``SYNTHETIC_OOD_CLASSES``).

Every shape is described by a :class:`ShapeDrawing`, from which :func:`draw_shape_mask` redraws
its pixels exactly. Pixel ``i`` covers ``[i, i + 1)``. A scene depends only on the random
generator it is given.
"""

import dataclasses
import math
from typing import Any, Callable, List, Sequence, Tuple, TypeVar

import cv2
import numpy as np

__all__ = [
    "DETAIL_RANGES",
    "MIN_IMAGE_SIZE",
    "SYNTHETIC_ID_CLASSES",
    "SYNTHETIC_OOD_CLASSES",
    "ShapeDrawing",
    "compose_scene",
    "draw_background",
    "draw_shape_mask",
    "pick_colour",
    "rasterise_polygons",
    "render_scene",
    "sample_placement",
]

SYNTHETIC_ID_CLASSES = ("circle", "square", "triangle")
SYNTHETIC_OOD_CLASSES = ("star", "cross", "ring", "crescent")

MIN_IMAGE_SIZE = 64  # smallest image side in pixels the scene layout is scaled down to

# Scene layout, in pixels of a 128x128 image (scaled linearly with the image size).
_REFERENCE_SIZE = 128
_RADIUS_RANGE = (9.0, 24.0)  # circumradius of a shape: 18-48 px across
_MAX_OBJECTS = 4  # shapes per image: 1 to _MAX_OBJECTS
_NEAR_PLACEMENT_PROBABILITY = 0.2  # chance to put a shape next to an earlier one (occlusion)
_PLACEMENT_ATTEMPTS = 20
_MIN_VISIBLE_FRACTION = 0.4  # no shape may be more than 60% hidden by later ones
_MIN_COLOUR_DISTANCE = 100.0  # RGB distance between a shape and the background it covers
_COLOUR_CANDIDATES = 8
# Shape proportion ("detail") ranges; shapes missing here have none.
DETAIL_RANGES = {
    "star": (0.4, 0.55),  # inner / outer radius
    "cross": (0.3, 0.45),  # half arm width / radius
    "ring": (0.45, 0.65),  # hole radius / radius
    "crescent": (0.35, 0.6),  # offset of the cut-out disc / radius
}
_REGULAR_POLYGONS = {"square": (4, 45.0), "triangle": (3, 90.0)}
_ROUND_VERTICES = 64
_SUPERSAMPLING = 4  # sub-pixels per pixel side when rasterising shapes
_FIXED_POINT_SHIFT = 4  # polygon vertices are given to OpenCV with 1/16 sub-pixel precision

_Label = TypeVar("_Label")
_Drawing = Any  # a frozen dataclass with ``center``, ``radius`` and ``colour`` fields


@dataclasses.dataclass(frozen=True)
class ShapeDrawing:
    """Everything needed to draw one shape.

    Attributes:
        shape (str): class name, one of ``SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES``.
        center (tuple[float, float]): (x, y) of the shape's centre in pixels.
        radius (float): circumradius in pixels: the shape lies within this distance of the
            centre.
        angle (float): rotation in degrees.
        detail (float): proportion of the shape (see ``DETAIL_RANGES``): star inner/outer
            radius, cross half arm width, ring hole radius, crescent cut-out offset, each
            relative to ``radius``; 0 for the other shapes.
        colour (tuple[int, int, int]): fill colour (R, G, B), 0-255.
    """

    shape: str
    center: Tuple[float, float]
    radius: float
    angle: float
    detail: float
    colour: Tuple[int, int, int]

    def to_json(self) -> dict:
        """The drawing as a JSON-serialisable dict (the ``"shape"`` field of an annotation)."""
        return {
            "name": self.shape,
            "center": list(self.center),
            "radius": self.radius,
            "angle": self.angle,
            "detail": self.detail,
            "colour": list(self.colour),
        }

    @classmethod
    def from_json(cls, data: dict) -> "ShapeDrawing":
        """Inverse of :meth:`to_json`."""
        return cls(
            shape=data["name"],
            center=(float(data["center"][0]), float(data["center"][1])),
            radius=float(data["radius"]),
            angle=float(data["angle"]),
            detail=float(data["detail"]),
            colour=(int(data["colour"][0]), int(data["colour"][1]), int(data["colour"][2])),
        )


def draw_shape_mask(drawing: ShapeDrawing, image_size: int) -> np.ndarray:
    """Rasterise a shape: the pixels the generator paints with its colour.

    Args:
        drawing (ShapeDrawing): the shape.
        image_size (int): side of the square image in pixels.

    Returns:
        np.ndarray: (image_size, image_size) bool mask, True on the shape (see
        :func:`rasterise_polygons`).
    """
    return rasterise_polygons(*_outline(drawing), image_size)


def rasterise_polygons(
    filled: Sequence[np.ndarray], cut_out: Sequence[np.ndarray], image_size: int
) -> np.ndarray:
    """Rasterise the union of ``filled`` minus the union of ``cut_out``.

    A pixel belongs to the region when at least half of its area does (measured on a
    ``_SUPERSAMPLING`` x ``_SUPERSAMPLING`` grid of sub-pixels).

    Args:
        filled (Sequence[np.ndarray]): polygons, each (K, 2) float (x, y) pixel coordinates.
        cut_out (Sequence[np.ndarray]): polygons removed from the filled ones.
        image_size (int): side of the square image in pixels.

    Returns:
        np.ndarray: (image_size, image_size) bool mask.
    """
    fine = np.zeros((image_size * _SUPERSAMPLING,) * 2, dtype=np.uint8)
    # One call per polygon: OpenCV fills several polygons of one call by the even-odd rule,
    # which would cut the overlap of two filled polygons out instead of keeping their union.
    for value, polygons in ((1, filled), (0, cut_out)):
        for polygon in polygons:
            cv2.fillPoly(fine, [_fixed_point(polygon)], value, cv2.LINE_8, _FIXED_POINT_SHIFT)
    coverage = fine.reshape(image_size, _SUPERSAMPLING, image_size, _SUPERSAMPLING).sum((1, 3))
    return coverage * 2 >= _SUPERSAMPLING**2


def render_scene(
    rng: np.random.Generator, classes: Sequence[str], image_size: int
) -> Tuple[np.ndarray, List[Tuple[ShapeDrawing, np.ndarray, np.ndarray]]]:
    """Draw one image: a cluttered background, then one to ``_MAX_OBJECTS`` shapes
    (:func:`compose_scene` with the shapes of this module).

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        classes (Sequence[str]): classes to draw from.
        image_size (int): side of the image in pixels.

    Returns:
        tuple: (image, objects): image (H, W, 3) uint8 RGB; objects in drawing order, each
        (drawing, (H, W) bool mask of the full shape, (H, W) bool mask of its visible pixels).
    """

    def sample_shape(
        rng: np.random.Generator, shape: str, placed: Sequence[ShapeDrawing]
    ) -> Tuple[ShapeDrawing, np.ndarray]:
        center, radius = sample_placement(rng, image_size, placed)
        low, high = DETAIL_RANGES.get(shape, (0.0, 0.0))
        drawing = ShapeDrawing(
            shape=shape,
            center=center,
            radius=radius,
            angle=round(float(rng.uniform(0.0, 360.0)), 3),
            detail=round(float(rng.uniform(low, high)), 3),
            colour=(0, 0, 0),
        )
        return drawing, draw_shape_mask(drawing, image_size)

    return compose_scene(rng, classes, image_size, sample_shape)


def compose_scene(
    rng: np.random.Generator,
    labels: Sequence[_Label],
    image_size: int,
    sample_object: Callable[
        [np.random.Generator, _Label, Sequence[_Drawing]], Tuple[_Drawing, np.ndarray]
    ],
) -> Tuple[np.ndarray, List[Tuple[_Drawing, np.ndarray, np.ndarray]]]:
    """Draw one image: a cluttered background, then one to ``_MAX_OBJECTS`` objects.

    Each object's label is drawn uniformly from ``labels``; ``sample_object(rng, label, placed)``
    then gives its drawing (a frozen dataclass with ``center``, ``radius`` and ``colour``
    fields, usually placed by :func:`sample_placement`) and its (H, W) bool mask. An object whose
    placement would leave an earlier one less than ``_MIN_VISIBLE_FRACTION`` visible is sampled
    again (after ``_PLACEMENT_ATTEMPTS`` failures it is left out); the first object always fits,
    so every image holds at least one. Its colour (:func:`pick_colour`) stands out from what it
    covers.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        labels (Sequence): the object classes to draw from.
        image_size (int): side of the image in pixels.
        sample_object (callable): see above; ``placed`` holds the drawings already in the image.

    Returns:
        tuple: (image, objects): image (H, W, 3) uint8 RGB; objects in drawing order, each
        (drawing with its colour, (H, W) bool mask of the full object, (H, W) bool mask of its
        visible pixels).
    """
    image = draw_background(rng, image_size)
    drawings: List[_Drawing] = []
    masks: List[np.ndarray] = []
    visible: List[np.ndarray] = []
    for _ in range(int(rng.integers(1, _MAX_OBJECTS + 1))):
        label = labels[int(rng.integers(len(labels)))]
        for _ in range(_PLACEMENT_ATTEMPTS):
            drawing, mask = sample_object(rng, label, drawings)
            uncovered = [v & ~mask for v in visible]
            if all(u.sum() >= _MIN_VISIBLE_FRACTION * m.sum() for u, m in zip(uncovered, masks)):
                break
        else:
            continue  # every placement hid too much of an earlier object: leave this one out
        drawing = dataclasses.replace(drawing, colour=pick_colour(rng, image, mask))
        image[mask] = drawing.colour
        drawings.append(drawing)
        masks.append(mask)
        visible = uncovered + [mask]
    return image, list(zip(drawings, masks, visible))


def sample_placement(
    rng: np.random.Generator, image_size: int, placed: Sequence[_Drawing]
) -> Tuple[Tuple[float, float], float]:
    """Sample the circumradius and centre of an object inside the image.

    With probability ``_NEAR_PLACEMENT_PROBABILITY`` the object is centred next to an earlier
    one, so that the two overlap or nearly touch.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        image_size (int): side of the image in pixels.
        placed (Sequence): drawings already in the image (their ``center`` and ``radius``).

    Returns:
        tuple: ((x, y) centre, radius) in pixels, rounded to 3 decimals as stored in the
        annotations.
    """
    scale = image_size / _REFERENCE_SIZE
    radius = rng.uniform(*_RADIUS_RANGE) * scale
    if placed and rng.random() < _NEAR_PLACEMENT_PROBABILITY:
        anchor = placed[int(rng.integers(len(placed)))]
        distance = (anchor.radius + radius) * rng.uniform(0.5, 1.0)
        direction = rng.uniform(0.0, 2.0 * math.pi)
        center = np.array(anchor.center) + distance * np.array(
            [math.cos(direction), math.sin(direction)]
        )
        center = np.clip(center, radius, image_size - radius)
    else:
        center = rng.uniform(radius, image_size - radius, size=2)
    return (round(float(center[0]), 3), round(float(center[1]), 3)), round(float(radius), 3)


def pick_colour(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray
) -> Tuple[int, int, int]:
    """A random colour that stands out from the pixels a shape will cover.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        image (np.ndarray): (H, W, 3) uint8 RGB image drawn so far.
        mask (np.ndarray): (H, W) bool mask of the shape.

    Returns:
        tuple[int, int, int]: the first of ``_COLOUR_CANDIDATES`` random RGB colours at least
        ``_MIN_COLOUR_DISTANCE`` from the mean covered colour, else the farthest one.
    """
    candidates = rng.integers(0, 256, size=(_COLOUR_CANDIDATES, 3))
    distances = np.linalg.norm(candidates - image[mask].mean(axis=0), axis=1)
    far_enough = np.nonzero(distances >= _MIN_COLOUR_DISTANCE)[0]
    best = far_enough[0] if far_enough.size else int(np.argmax(distances))
    return tuple(int(c) for c in candidates[best])


def draw_background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A textured, cluttered background without any shape-like object.

    Colour gradient + smooth blotches + up to three thin lines and four dots (at most 7 px
    across at 128 px, well below the smallest shape) + pixel noise.

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        image_size (int): side of the image in pixels.

    Returns:
        np.ndarray: (image_size, image_size, 3) uint8 RGB image.
    """
    scale = image_size / _REFERENCE_SIZE
    coordinates = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    direction = rng.uniform(0.0, 2.0 * math.pi)
    ramp = coordinates[None, :] * math.cos(direction) + coordinates[:, None] * math.sin(direction)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    start, end = rng.uniform(30.0, 225.0, size=(2, 3)).astype(np.float32)
    image = start + (end - start) * ramp[..., None]
    cells = int(rng.integers(3, 8))
    blotches = rng.normal(0.0, rng.uniform(10.0, 30.0), size=(cells, cells, 3)).astype(np.float32)
    image += cv2.resize(blotches, (image_size, image_size), interpolation=cv2.INTER_CUBIC)

    def point() -> Tuple[int, int]:
        x, y = rng.uniform(0.0, image_size, size=2)
        return int(x), int(y)

    def colour() -> Tuple[float, float, float]:
        return tuple(float(c) for c in rng.uniform(0.0, 255.0, size=3))

    for _ in range(int(rng.integers(0, 4))):  # thin lines across the image
        cv2.line(image, point(), point(), colour(), max(1, round(scale)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 5))):  # dots
        radius = max(1, round(rng.uniform(1.0, 3.5) * scale))
        cv2.circle(image, point(), radius, colour(), -1, cv2.LINE_AA)
    image += rng.normal(0.0, rng.uniform(3.0, 8.0), size=image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _outline(drawing: ShapeDrawing) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Polygons of a shape.

    Args:
        drawing (ShapeDrawing): the shape.

    Returns:
        tuple[list[np.ndarray], list[np.ndarray]]: (filled, cut_out): polygons, each (K, 2)
        float (x, y) pixel coordinates; the shape is the union of ``filled`` minus the union of
        ``cut_out``.
    """
    radius, detail = drawing.radius, drawing.detail
    if drawing.shape in _REGULAR_POLYGONS:
        num_vertices, first_vertex = _REGULAR_POLYGONS[drawing.shape]
        angles = np.deg2rad(first_vertex + 360.0 * np.arange(num_vertices) / num_vertices)
        filled = [radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)]
        cut_out = []
    elif drawing.shape == "circle":
        filled, cut_out = [_disc(radius)], []
    elif drawing.shape == "ring":
        filled, cut_out = [_disc(radius)], [_disc(detail * radius)]
    elif drawing.shape == "crescent":
        cut = _disc(radius) + [detail * radius, 0.0]
        filled, cut_out = [_disc(radius)], [cut]
    elif drawing.shape == "star":
        angles = np.deg2rad(90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, radius, detail * radius)
        filled, cut_out = [radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)], []
    elif drawing.shape == "cross":
        half_width = detail * radius
        arm = math.sqrt(radius**2 - half_width**2)  # arm corners on the circumcircle
        w, a = half_width, arm
        filled = [
            np.array(
                [[w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]]
                + [[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w]]
            )
        ]
        cut_out = []
    else:
        raise ValueError(
            f"Unknown shape {drawing.shape!r}; expected one of "
            f"{', '.join(SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES)}."
        )
    return [_place(p, drawing) for p in filled], [_place(p, drawing) for p in cut_out]


def _disc(radius: float) -> np.ndarray:
    """(``_ROUND_VERTICES``, 2) polygon of a circle of ``radius`` centred at the origin."""
    angles = np.linspace(0.0, 2.0 * math.pi, _ROUND_VERTICES, endpoint=False)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _place(points: np.ndarray, drawing: ShapeDrawing) -> np.ndarray:
    """Rotate (K, 2) points about the origin by ``drawing.angle`` and move them to ``drawing.center``."""
    theta = math.radians(drawing.angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return points @ rotation.T + np.array(drawing.center)


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """(K, 2) pixel coordinates -> OpenCV fixed-point polygon on the supersampled grid.

    Sub-pixel ``j`` covers ``[j, j + 1) / _SUPERSAMPLING`` in pixels; OpenCV puts its centre at
    ``j``.
    """
    scaled = points * _SUPERSAMPLING - 0.5
    return np.round(scaled * (1 << _FIXED_POINT_SHIFT)).astype(np.int32)
