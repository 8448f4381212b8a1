"""The pretraining corpus: many procedural shape classes, none of them a benchmark shape.

The embedded benchmarks test on seven shapes (circle, square, triangle as ID; star, cross, ring,
crescent as OOD). Users fine-tune detectors pretrained on broad data (ImageNet, COCO); this
corpus plays that part here. It holds ``num_classes`` shape classes, each a random *template*
drawn from its own seed (:mod:`.templates`: blobs, polygons, spiky, holed, compound and notched
shapes, strokes).

An *instance* of a class is its template mirrored or not, stretched by up to
``_MAX_STRETCH`` along each axis, rotated by any angle, scaled and placed; images are drawn with
the benchmark's own backgrounds, clutter, colours and occlusion rule
(:mod:`vos_det.core.shape_scenes`), as single-object crops or as detection scenes.

No template is drawn by the benchmark's shape generators, and every template is checked against
them: one whose mask overlaps a benchmark shape (any of its proportions, any rotation, mirrored
or not) with an IoU above ``max_benchmark_iou`` is drawn again, as is one that overlaps an
earlier template above ``max_template_iou`` (so that classes can be told apart). Random shapes
may still resemble test shapes, as ImageNet photos resemble COCO objects.

Everything depends only on the :class:`CorpusSpec` and the random generators passed in: the
corpus is generated on the fly and nothing but trained weights is ever stored.
"""

import dataclasses
import functools
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..core.shape_scenes import (
    DETAIL_RANGES,
    SYNTHETIC_ID_CLASSES,
    SYNTHETIC_OOD_CLASSES,
    ShapeDrawing,
    compose_scene,
    draw_background,
    draw_shape_mask,
    pick_colour,
    rasterise_polygons,
    sample_placement,
)
from .templates import CORPUS_KINDS, Polygon, ShapeTemplate, build_template

__all__ = [
    "CORPUS_KINDS",
    "CorpusDrawing",
    "CorpusSpec",
    "ShapeTemplate",
    "benchmark_overlap",
    "corpus_templates",
    "draw_corpus_mask",
    "render_corpus_crop",
    "render_corpus_scene",
]

_MAX_STRETCH = 0.15  # an instance's scale along each template axis: 1 +- this
_CHECK_SIZE = 40  # side in pixels of the masks the similarity checks compare
_CHECK_ROTATIONS = 36  # rotations tried by the similarity checks (every 10 degrees)
_CHECK_DETAILS = 3  # proportions tried per benchmark shape (spread over DETAIL_RANGES)
_MAX_ATTEMPTS = 200  # templates drawn per class before giving up
_CROP_RADIUS_FRACTION = (0.25, 0.45)  # circumradius of a crop's object, relative to its side


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """The corpus's parameters; the templates depend only on them.

    Attributes:
        num_classes (int): shape classes (>= 1).
        seed (int): seed of the templates (>= 0).
        max_benchmark_iou (float): largest IoU a template may have with a benchmark shape.
        max_template_iou (float): largest IoU a template may have with an earlier template.
    """

    num_classes: int = 64
    seed: int = 0
    max_benchmark_iou: float = 0.8
    max_template_iou: float = 0.85

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {self.num_classes!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("max_benchmark_iou", "max_template_iou"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")



@dataclasses.dataclass(frozen=True)
class CorpusDrawing:
    """Everything needed to draw one instance of a corpus class.

    Attributes:
        label (int): class index in ``[0, num_classes)``.
        center (tuple[float, float]): (x, y) in pixels.
        radius (float): circumradius in pixels (the template's unit disc is scaled to it; a
            stretch may reach ``1 + _MAX_STRETCH`` times further).
        angle (float): rotation in degrees.
        mirrored (bool): whether the template is mirrored (x -> -x) first.
        stretch (tuple[float, float]): scale along the template's x and y axes.
        colour (tuple[int, int, int]): fill colour (R, G, B).
    """

    label: int
    center: Tuple[float, float]
    radius: float
    angle: float
    mirrored: bool
    stretch: Tuple[float, float]
    colour: Tuple[int, int, int] = (0, 0, 0)


def corpus_templates(spec: CorpusSpec = CorpusSpec()) -> Tuple[ShapeTemplate, ...]:
    """The corpus's classes: template ``i`` is drawn from seed ``(spec.seed, i, attempt)``.

    Kinds take turns (class ``i`` is of kind ``CORPUS_KINDS[i % 7]``). A candidate too close to a
    benchmark shape or to an earlier template (see :class:`CorpusSpec`) is replaced by the next
    attempt. Computed once per spec (cached).

    Args:
        spec (CorpusSpec): the corpus.

    Returns:
        tuple[ShapeTemplate, ...]: ``spec.num_classes`` templates.

    Raises:
        RuntimeError: if a class finds no acceptable template in ``_MAX_ATTEMPTS`` attempts
            (the similarity bounds are too strict for that many classes).
    """
    return _templates(spec)


@functools.lru_cache(maxsize=8)
def _templates(spec: CorpusSpec) -> Tuple[ShapeTemplate, ...]:
    benchmark = _benchmark_masks()
    accepted: List[ShapeTemplate] = []
    accepted_masks: List[np.ndarray] = []  # each (2 * _CHECK_ROTATIONS, S, S): rotations, mirrors
    for index in range(spec.num_classes):
        kind = CORPUS_KINDS[index % len(CORPUS_KINDS)]
        for attempt in range(_MAX_ATTEMPTS):
            rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(index, attempt)))
            template = build_template(kind, rng)
            masks = _pose_masks(template)
            if _max_iou(masks, benchmark) > spec.max_benchmark_iou:
                continue
            if any(_max_iou(masks, other[:1]) > spec.max_template_iou for other in accepted_masks):
                continue
            accepted.append(template)
            accepted_masks.append(masks)
            break
        else:
            raise RuntimeError(
                f"No acceptable {kind} template for corpus class {index} in {_MAX_ATTEMPTS} "
                f"attempts: raise max_benchmark_iou ({spec.max_benchmark_iou}) or "
                f"max_template_iou ({spec.max_template_iou}), or use fewer classes."
            )
    return tuple(accepted)


def benchmark_overlap(template: ShapeTemplate) -> Dict[str, float]:
    """How much a template resembles each benchmark shape.

    Args:
        template (ShapeTemplate): a template.

    Returns:
        dict[str, float]: benchmark shape -> the largest IoU of their masks (both scaled to the
        same circumradius and centred) over rotations, mirroring and the shape's proportions.
    """
    masks = _pose_masks(template)
    return {
        shape: _max_iou(masks, _benchmark_masks(shape))
        for shape in SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES
    }


def draw_corpus_mask(
    template: ShapeTemplate, drawing: CorpusDrawing, image_size: int
) -> np.ndarray:
    """Rasterise one instance (:func:`~vos_det.core.shape_scenes.rasterise_polygons`).

    Returns:
        np.ndarray: (image_size, image_size) bool mask.
    """
    place = functools.partial(_place, drawing=drawing)
    filled = [place(p) for p in template.filled]
    cut_out = [place(p) for p in template.cut_out]
    return rasterise_polygons(filled, cut_out, image_size)


def render_corpus_crop(
    rng: np.random.Generator, templates: Sequence[ShapeTemplate], label: int, image_size: int
) -> np.ndarray:
    """One object of class ``label`` on a cluttered background, as the classification
    benchmark draws its images (circumradius 25-45% of the side, fully inside).

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        templates (Sequence[ShapeTemplate]): the corpus classes.
        label (int): the class to draw.
        image_size (int): side of the square image in pixels.

    Returns:
        np.ndarray: (image_size, image_size, 3) uint8 RGB image.
    """
    image = draw_background(rng, image_size)
    radius = rng.uniform(*_CROP_RADIUS_FRACTION) * image_size
    reach = radius * (1.0 + _MAX_STRETCH)
    center = rng.uniform(min(reach, image_size / 2), max(image_size - reach, image_size / 2), 2)
    drawing = _sample_pose(rng, label, (float(center[0]), float(center[1])), float(radius))
    mask = draw_corpus_mask(templates[label], drawing, image_size)
    image[mask] = pick_colour(rng, image, mask)
    return image


def render_corpus_scene(
    rng: np.random.Generator, templates: Sequence[ShapeTemplate], image_size: int
) -> Tuple[np.ndarray, List[Tuple[CorpusDrawing, np.ndarray, np.ndarray]]]:
    """A detection scene of corpus objects, laid out like the benchmark's scenes
    (:func:`~vos_det.core.shape_scenes.compose_scene`: one to four objects, sizes, occlusion
    rule, clutter).

    Args:
        rng (np.random.Generator): source of randomness (consumed).
        templates (Sequence[ShapeTemplate]): the corpus classes.
        image_size (int): side of the square image in pixels.

    Returns:
        tuple: (image, objects): image (H, W, 3) uint8 RGB; objects in drawing order, each
        (drawing, (H, W) bool mask of the full object, (H, W) bool mask of its visible pixels).
    """

    def sample_object(
        rng: np.random.Generator, label: int, placed: Sequence[CorpusDrawing]
    ) -> Tuple[CorpusDrawing, np.ndarray]:
        center, radius = sample_placement(rng, image_size, placed)
        drawing = _sample_pose(rng, label, center, radius)
        return drawing, draw_corpus_mask(templates[label], drawing, image_size)

    return compose_scene(rng, range(len(templates)), image_size, sample_object)


def _sample_pose(
    rng: np.random.Generator, label: int, center: Tuple[float, float], radius: float
) -> CorpusDrawing:
    """An instance's random mirroring, stretch and rotation (colour left black)."""
    return CorpusDrawing(
        label=label,
        center=center,
        radius=radius,
        angle=float(rng.uniform(0.0, 360.0)),
        mirrored=bool(rng.random() < 0.5),
        stretch=tuple(float(s) for s in rng.uniform(1 - _MAX_STRETCH, 1 + _MAX_STRETCH, 2)),
    )


def _place(points: Polygon, drawing: CorpusDrawing) -> Polygon:
    """Template units -> pixels: mirror, stretch, rotate, scale by the radius, move."""
    x_scale = -drawing.stretch[0] if drawing.mirrored else drawing.stretch[0]
    points = points * np.array([x_scale, drawing.stretch[1]])
    theta = math.radians(drawing.angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return drawing.radius * points @ rotation.T + np.array(drawing.center)


# --- Similarity checks ----------------------------------------------------------------------


def _pose_masks(template: ShapeTemplate) -> np.ndarray:
    """(2 * _CHECK_ROTATIONS, S, S) bool masks of a template, centred, circumradius S * 0.45:
    every rotation, then every rotation mirrored."""
    center = (_CHECK_SIZE / 2, _CHECK_SIZE / 2)
    return np.stack(
        [
            draw_corpus_mask(
                template,
                CorpusDrawing(0, center, _CHECK_SIZE * 0.45, angle, mirrored, (1.0, 1.0)),
                _CHECK_SIZE,
            )
            for mirrored in (False, True)
            for angle in np.arange(_CHECK_ROTATIONS) * 360.0 / _CHECK_ROTATIONS
        ]
    )


@functools.lru_cache(maxsize=None)
def _benchmark_masks(shape: str = "") -> np.ndarray:
    """(M, S, S) bool masks of one benchmark shape ("" = all seven) at angle 0, over
    ``_CHECK_DETAILS`` proportions, drawn like :func:`_pose_masks` draws templates."""
    shapes = [shape] if shape else SYNTHETIC_ID_CLASSES + SYNTHETIC_OOD_CLASSES
    masks = []
    for name in shapes:
        low, high = DETAIL_RANGES.get(name, (0.0, 0.0))
        for detail in np.linspace(low, high, _CHECK_DETAILS):
            drawing = ShapeDrawing(
                name, (_CHECK_SIZE / 2,) * 2, _CHECK_SIZE * 0.45, 0.0, float(detail), (0, 0, 0)
            )
            masks.append(draw_shape_mask(drawing, _CHECK_SIZE))
    return np.stack(masks)


def _max_iou(poses: np.ndarray, references: np.ndarray) -> float:
    """Largest IoU between any of (P, S, S) ``poses`` and any of (M, S, S) ``references``."""
    a = poses.reshape(len(poses), -1).astype(np.float32)
    b = references.reshape(len(references), -1).astype(np.float32)
    intersection = a @ b.T
    union = a.sum(1, keepdims=True) + b.sum(1) - intersection
    return float((intersection / np.maximum(union, 1.0)).max())
