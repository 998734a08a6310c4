"""ShapesWorld scenes: 1-4 flat shapes on a grey 64x64 canvas, with a round-trippable description.

A scene never holds two objects of the same colour *and* shape, so ``"the red circle"`` always
names exactly one object, and its largest object (the *main* object) is unique: its radius
exceeds every other object's by at least ``MAIN_MARGIN`` pixels, so "the largest" is visible at a
glance and not a one-pixel judgement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from omnifuse.datasets.render import COLOURS, SHAPES, Sprite

IMAGE_SIZE = 64
SIZES = ("small", "large")
RADII = {"small": (5, 7), "large": (9, 13)}  # inclusive ranges, pixels
MAIN_MARGIN = 3  # the main object's radius exceeds every other radius by at least this
SPATIAL_MARGIN = 6  # centres closer than this along an axis have no clear left/right (above/below)
PATCH_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": SIZES,
}
"""Object attribute -> its values; a patch label is 0 (empty) or 1 + the value's index."""
PATCH_IGNORE = -100  # omnifuse.types.IGNORE_INDEX: the datasets layer does not import torch code
_SCENE_ITEM = re.compile(r"^(small|large) (\w+) (\w+) at (\d+),(\d+) r(\d+)$")


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene; ``x``/``y`` are its centre in pixels (``y`` grows downwards)."""

    shape: str
    colour: str
    size: str
    x: int
    y: int
    radius: int
    angle: float = 0.0

    @property
    def name(self) -> str:
        """``"red circle"``: unique within a scene."""
        return f"{self.colour} {self.shape}"

    def sprite(self) -> Sprite:
        """The object as something :func:`~omnifuse.datasets.render.draw` can draw."""
        return Sprite(self.shape, self.colour, self.x, self.y, self.radius, self.angle)

    def describe(self) -> str:
        """``"large red circle at 20,31 r11"``."""
        return f"{self.size} {self.colour} {self.shape} at {self.x},{self.y} r{self.radius}"


@dataclass(frozen=True)
class Scene:
    """A static scene (the ``image`` of a ShapesWorld row)."""

    objects: tuple[SceneObject, ...]
    background: int = 255

    @property
    def main(self) -> SceneObject:
        """The largest object (unique by construction)."""
        return max(self.objects, key=lambda obj: obj.radius)

    def describe(self) -> str:
        """The manifests' ``scene`` field: object descriptions joined by ``"; "``."""
        return "; ".join(obj.describe() for obj in self.objects)


def parse_scene(text: str) -> tuple[SceneObject, ...]:
    """Inverse of :meth:`Scene.describe` (angles are not stored and come back as 0)."""
    objects = []
    for item in text.split("; "):
        match = _SCENE_ITEM.match(item)
        if match is None:
            raise ValueError(f"bad scene item {item!r}: expected 'SIZE COLOUR SHAPE at X,Y rR'")
        size, colour, shape, x, y, radius = match.groups()
        objects.append(SceneObject(shape, colour, size, int(x), int(y), int(radius)))
    return tuple(objects)


def relation(a: SceneObject, b: SceneObject, axis: str) -> str | None:
    """Where ``a`` is relative to ``b`` along ``axis`` ("x" or "y"), or None when unclear.

    Returns one of ``"left of"``, ``"right of"`` (axis x), ``"above"``, ``"below"`` (axis y).
    """
    if axis == "x":
        delta, names = b.x - a.x, ("left of", "right of")
    elif axis == "y":
        delta, names = b.y - a.y, ("above", "below")
    else:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    if abs(delta) < SPATIAL_MARGIN:
        return None
    return names[0] if delta > 0 else names[1]


def region(obj: SceneObject) -> str:
    """Coarse position in thirds of the canvas as a phrase: ``"in the top left"``,
    ``"on the right"``, ``"at the bottom"``, ``"in the middle"``..."""
    third = IMAGE_SIZE / 3
    row = "top" if obj.y < third else "bottom" if obj.y >= 2 * third else ""
    col = "left" if obj.x < third else "right" if obj.x >= 2 * third else ""
    if row and col:
        return f"in the {row} {col}"
    if col:
        return f"on the {col}"
    return f"at the {row}" if row else "in the middle"


def _radii(rng: np.random.Generator, count: int) -> tuple[list[str], list[int]]:
    """Sizes and radii whose maximum exceeds every other radius by ``MAIN_MARGIN``."""
    while True:
        sizes = [SIZES[int(i)] for i in rng.integers(0, 2, size=count)]
        radii = [int(rng.integers(RADII[s][0], RADII[s][1] + 1)) for s in sizes]
        second = sorted(radii)[-2] if count > 1 else 0
        if max(radii) - second >= MAIN_MARGIN:
            return sizes, radii


def _fits(x: int, y: int, radius: int, centres: list[tuple[int, int]], radii: list[int]) -> bool:
    """Whether a disc at (x, y) keeps a 3 px gap to every placed object (``radii[i]`` is the
    radius of ``centres[i]``; unplaced radii are ignored)."""
    placed = zip(centres, radii, strict=False)
    return all(np.hypot(x - cx, y - cy) >= radius + r + 3 for (cx, cy), r in placed)


def _place(rng: np.random.Generator, radii: list[int]) -> list[tuple[int, int]] | None:
    """Non-overlapping centres inside the canvas, or None if random placement got stuck."""
    centres: list[tuple[int, int]] = []
    for radius in radii:
        for _ in range(50):
            x, y = (int(v) for v in rng.integers(radius + 2, IMAGE_SIZE - radius - 2, size=2))
            if _fits(x, y, radius, centres, radii):
                centres.append((x, y))
                break
        else:
            return None
    return centres


def sample_scene(rng: np.random.Generator, count: int | None = None) -> Scene:
    """A random scene of ``count`` (default: uniform 1-4) objects with distinct colour+shape."""
    count = int(rng.integers(1, 5)) if count is None else count
    if not 1 <= count <= 4:
        raise ValueError(f"a scene holds 1-4 objects, got count={count}")
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    while True:
        picked = [combos[int(i)] for i in rng.choice(len(combos), size=count, replace=False)]
        sizes, radii = _radii(rng, count)
        centres = _place(rng, radii)
        if centres is not None:
            break
    angles = rng.uniform(-15.0, 15.0, size=count)
    objects = tuple(
        SceneObject(
            shape, colour, size, x, y, radius, 0.0 if shape == "circle" else round(float(a), 1)
        )
        for (colour, shape), size, radius, (x, y), a in zip(
            picked, sizes, radii, centres, angles, strict=True
        )
    )
    return Scene(objects, background=int(rng.integers(200, 256)))


def patch_labels(
    text: str | None, grid: int, attributes: Sequence[str], min_cover: float = 0.25
) -> npt.NDArray[np.int64]:
    """What lies under each patch of a ``grid x grid`` split of the canvas, per attribute.

    Each object is rasterised as its disc (centre, radius; the drawn shape lies inside it) on
    the 64-px canvas. A patch takes the object covering most of its pixels when that object
    covers at least ``min_cover`` of them; a patch no disc touches is empty (label 0); one only
    partly touched is :data:`PATCH_IGNORE`, since neither "empty" nor the object is true of it.

    Args:
        text: a manifest ``scene`` field (None: every label is :data:`PATCH_IGNORE`).
        grid: patches per side (a ViT's ``image_size / patch_size``); must divide 64.
        attributes: names in :data:`PATCH_ATTRIBUTES`.
        min_cover: share of a patch's pixels an object must cover to label it, in ``(0, 1]``.

    Returns:
        ``[grid * grid, len(attributes)]`` labels, patches in row-major order (the ViT's).
    """
    unknown = [a for a in attributes if a not in PATCH_ATTRIBUTES]
    if unknown or IMAGE_SIZE % grid or not 0.0 < min_cover <= 1.0:
        raise ValueError(
            f"patch_labels: attributes {list(attributes)} (valid: {', '.join(PATCH_ATTRIBUTES)}), "
            f"grid={grid} (must divide {IMAGE_SIZE}), min_cover={min_cover} (in (0, 1])"
        )
    labels = np.full((grid * grid, len(attributes)), PATCH_IGNORE, dtype=np.int64)
    if text is None:
        return labels
    objects = parse_scene(text) if text else ()
    cell = IMAGE_SIZE // grid
    centres = np.arange(IMAGE_SIZE) + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    # [K, grid*grid]: pixels of each patch inside each object's disc
    cover = np.stack(
        [
            ((xs - o.x) ** 2 + (ys - o.y) ** 2 <= o.radius**2)
            .reshape(grid, cell, grid, cell)
            .sum(axis=(1, 3))
            .reshape(-1)
            for o in objects
        ]
        or [np.zeros(grid * grid, dtype=np.int64)]
    )
    best = cover.argmax(axis=0)
    labelled = cover.max(axis=0) >= min_cover * cell * cell
    labels[cover.sum(axis=0) == 0] = 0
    for column, attribute in enumerate(attributes):
        values = PATCH_ATTRIBUTES[attribute]
        ids = np.array([1 + values.index(getattr(o, attribute)) for o in objects] or [0])
        labels[labelled, column] = ids[best[labelled]]
    return labels
