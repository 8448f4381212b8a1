"""The corpus's shape classes: random templates of seven kinds (plain NumPy).

A template is a shape in template units (it fits the unit disc): filled polygons minus cut-out
polygons. :func:`build_template` draws one of a kind from a random generator; the corpus
(:mod:`.corpus`) keeps those that resemble no benchmark shape and no other template.

* ``blob``: a smooth star-convex outline, ``r(theta) = 1 + sum_k a_k cos(k theta + phi_k)``;
* ``polygon``: an irregular polygon of 4-8 vertices;
* ``spiky``: 3-9 spikes of irregular lengths around a core;
* ``holed``: a blob or polygon with one or two holes cut through it;
* ``compound``: the union of two or three ellipses, rectangles or triangles;
* ``notched``: a blob or polygon with one or two bites taken out of its edge;
* ``stroke``: a thick open polyline with round joints.
"""

import dataclasses
import math
from typing import Callable, Dict, List, Tuple

import numpy as np

__all__ = ["CORPUS_KINDS", "Polygon", "ShapeTemplate", "build_template"]

CORPUS_KINDS = ("blob", "polygon", "spiky", "holed", "compound", "notched", "stroke")
_OUTLINE_POINTS = 72  # vertices of smooth outlines (blobs, ellipses, joints)

Polygon = np.ndarray  # (K, 2) float (x, y)


@dataclasses.dataclass(frozen=True)
class ShapeTemplate:
    """One corpus class: polygons in template units (the shape fits the unit disc).

    Attributes:
        kind (str): one of ``CORPUS_KINDS``.
        filled (tuple[np.ndarray, ...]): polygons, each (K, 2) float (x, y).
        cut_out (tuple[np.ndarray, ...]): polygons removed from the union of ``filled``.
    """

    kind: str
    filled: Tuple[Polygon, ...]
    cut_out: Tuple[Polygon, ...]


def build_template(kind: str, rng: np.random.Generator) -> ShapeTemplate:
    """A random template of ``kind`` (one of ``CORPUS_KINDS``), drawn from ``rng``."""
    if kind not in _TEMPLATE_BUILDERS:
        raise ValueError(f"Unknown template kind {kind!r}; use one of {', '.join(CORPUS_KINDS)}.")
    return _TEMPLATE_BUILDERS[kind](rng)



def _ellipse(a: float, b: float, points: int = _OUTLINE_POINTS) -> Polygon:
    angles = np.linspace(0.0, 2.0 * math.pi, points, endpoint=False)
    return np.stack([a * np.cos(angles), b * np.sin(angles)], axis=1)


def _transform(points: Polygon, angle: float = 0.0, offset=(0.0, 0.0), scale: float = 1.0):
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return scale * points @ rotation.T + np.asarray(offset)


def _blob(rng: np.random.Generator) -> Polygon:
    """A smooth star-convex outline with 1-3 random harmonics of order 2-7."""
    angles = np.linspace(0.0, 2.0 * math.pi, _OUTLINE_POINTS, endpoint=False)
    orders = rng.choice(np.arange(2, 8), size=int(rng.integers(1, 4)), replace=False)
    radii = np.ones_like(angles)
    for order in orders:
        radii += rng.uniform(0.1, 0.35) * np.cos(order * angles + rng.uniform(0, 2 * math.pi))
    radii = np.maximum(radii / radii.max(), 0.3)
    return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _polygon(rng: np.random.Generator) -> Polygon:
    """An irregular polygon of 4-8 vertices at random angles and radii 0.5-1."""
    count = int(rng.integers(4, 9))
    gaps = rng.uniform(0.5, 1.5, count)
    angles = rng.uniform(0, 2 * math.pi) + np.cumsum(gaps) / gaps.sum() * 2 * math.pi
    radii = rng.uniform(0.5, 1.0, count)
    return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _spiky(rng: np.random.Generator) -> Polygon:
    """3-9 spikes of lengths 0.7-1 around a core of radius 0.25-0.6, at irregular angles."""
    count = int(rng.integers(3, 10))
    gaps = rng.uniform(0.6, 1.4, count)
    tips = rng.uniform(0, 2 * math.pi) + np.cumsum(gaps) / gaps.sum() * 2 * math.pi
    valleys = tips + np.diff(np.append(tips, tips[0] + 2 * math.pi)) * rng.uniform(0.35, 0.65, count)
    angles = np.stack([tips, valleys], axis=1).ravel()
    core = rng.uniform(0.25, 0.6)
    radii = np.stack([rng.uniform(0.7, 1.0, count), core * rng.uniform(0.85, 1.15, count)], 1)
    return radii.ravel()[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _solid(rng: np.random.Generator) -> Polygon:
    return _blob(rng) if rng.random() < 0.5 else _polygon(rng)


def _inner_radius(outline: Polygon) -> float:
    """Distance from the origin to the nearest point of a star-convex outline's edges."""
    start, end = outline, np.roll(outline, -1, axis=0)
    edge = end - start
    t = np.clip(-(start * edge).sum(1) / np.maximum((edge * edge).sum(1), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(start + t[:, None] * edge, axis=1).min())


def _holed(rng: np.random.Generator) -> ShapeTemplate:
    """A blob or polygon with one or two holes (blobs or polygons) inside it."""
    outline = _solid(rng)
    inner = _inner_radius(outline)
    holes = []
    count = int(rng.integers(1, 3))
    direction = 0.0  # of the first hole, drawn below; a second hole lies opposite it
    for index in range(count):
        size = rng.uniform(0.25, 0.45) * inner
        if count == 1:
            distance = rng.uniform(0.0, max(inner - size, 0.0) * 0.8)
        else:
            size *= 0.8
            distance = rng.uniform(size * 1.1, max(inner - size, size * 1.1))
        direction = rng.uniform(0, 2 * math.pi) if index == 0 else direction + math.pi
        offset = distance * np.array([math.cos(direction), math.sin(direction)])
        holes.append(_transform(_solid(rng), rng.uniform(0, 2 * math.pi), offset, size))
    return _normalised("holed", [outline], holes)


def _compound(rng: np.random.Generator) -> ShapeTemplate:
    """The union of 2-3 parts (ellipses, rectangles, triangles) around the origin."""
    parts = []
    for _ in range(int(rng.integers(2, 4))):
        width, height = rng.uniform(0.15, 0.6, 2)
        part = int(rng.integers(3))
        if part == 0:
            outline = _ellipse(width, height)
        elif part == 1:
            outline = np.array([[-width, -height], [width, -height], [width, height], [-width, height]])
        else:
            outline = np.array([[-width, -height], [width, -height], [0.0, height]])
        distance = rng.uniform(0.2, 0.6)
        direction = rng.uniform(0, 2 * math.pi)
        offset = distance * np.array([math.cos(direction), math.sin(direction)])
        parts.append(_transform(outline, rng.uniform(0, 2 * math.pi), offset))
    return _normalised("compound", parts, [])


def _notched(rng: np.random.Generator) -> ShapeTemplate:
    """A blob or polygon with one or two bites (discs or ellipses) out of its edge."""
    outline = _solid(rng)
    bites = []
    for _ in range(int(rng.integers(1, 3))):
        vertex = outline[int(rng.integers(len(outline)))]
        size = rng.uniform(0.25, 0.5)
        bites.append(_transform(_ellipse(size, size * rng.uniform(0.6, 1.0)), rng.uniform(0, 6.3), vertex))
    return _normalised("notched", [outline], bites)


def _stroke(rng: np.random.Generator) -> ShapeTemplate:
    """A thick open polyline of 2-4 segments with round joints and ends."""
    count = int(rng.integers(3, 6))
    points = [np.zeros(2)]
    heading = rng.uniform(0, 2 * math.pi)
    for _ in range(count - 1):
        heading += rng.uniform(-2.2, 2.2)
        points.append(points[-1] + rng.uniform(0.5, 1.0) * np.array([math.cos(heading), math.sin(heading)]))
    half_width = rng.uniform(0.1, 0.2) * max(np.ptp(np.array(points), axis=0).max(), 1.0)
    parts = [_transform(_ellipse(half_width, half_width, 24), offset=p) for p in points]
    for start, end in zip(points[:-1], points[1:]):
        along = (end - start) / max(np.linalg.norm(end - start), 1e-9)
        across = half_width * np.array([-along[1], along[0]])
        parts.append(np.array([start + across, end + across, end - across, start - across]))
    return _normalised("stroke", parts, [])


def _normalised(kind: str, filled: List[Polygon], cut_out: List[Polygon]) -> ShapeTemplate:
    """Centre the filled polygons' bounding box on the origin and scale them into the unit
    disc (cut-outs moved with them)."""
    vertices = np.concatenate(filled)
    center = (vertices.min(0) + vertices.max(0)) / 2
    scale = 1.0 / np.linalg.norm(vertices - center, axis=1).max()
    fit = lambda p: (p - center) * scale  # noqa: E731
    return ShapeTemplate(kind, tuple(fit(p) for p in filled), tuple(fit(p) for p in cut_out))


def _single(kind: str, build: Callable[[np.random.Generator], Polygon]):
    return lambda rng: _normalised(kind, [build(rng)], [])


_TEMPLATE_BUILDERS: Dict[str, Callable[[np.random.Generator], ShapeTemplate]] = {
    "blob": _single("blob", _blob),
    "polygon": _single("polygon", _polygon),
    "spiky": _single("spiky", _spiky),
    "holed": _holed,
    "compound": _compound,
    "notched": _notched,
    "stroke": _stroke,
}
