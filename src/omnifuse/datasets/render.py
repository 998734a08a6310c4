"""Drawing of flat coloured shapes with PIL and writing of short H.264 clips with PyAV."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 225),
    "yellow": (240, 200, 20),
    "purple": (145, 60, 195),
    "orange": (250, 135, 25),
}
SUPERSAMPLE = 4  # draw at 4x and box-filter down: cheap anti-aliasing

Point = tuple[float, float]


@dataclass(frozen=True)
class Sprite:
    """One shape to draw, in output-pixel units.

    Attributes:
        shape: One of :data:`SHAPES`.
        colour: One of :data:`COLOURS`.
        x: Centre column.
        y: Centre row.
        radius: Half the extent of the shape.
        angle: Rotation in degrees (ignored for circles).
    """

    shape: str
    colour: str
    x: float
    y: float
    radius: float
    angle: float = 0.0


def _regular(cx: float, cy: float, r: float, n: int, angle: float) -> list[Point]:
    """Vertices of a regular ``n``-gon of circumradius ``r``, first vertex pointing up."""
    start = math.radians(angle) - math.pi / 2
    return [
        (
            cx + r * math.cos(start + 2 * math.pi * k / n),
            cy + r * math.sin(start + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _rotate(points: Sequence[Point], cx: float, cy: float, angle: float) -> list[Point]:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def polygon(sprite: Sprite, scale: float = 1.0) -> list[Point]:
    """Outline of a non-circle sprite, in pixels multiplied by ``scale``.

    Sizes are chosen so that the shapes have similar areas for the same radius; the diamond is
    a narrow rhombus so that a tilted square never looks like one.
    """
    cx, cy, r, a = sprite.x * scale, sprite.y * scale, sprite.radius * scale, sprite.angle
    if sprite.shape == "square":
        h = 0.85 * r
        return _rotate(
            [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)], cx, cy, a
        )
    if sprite.shape == "triangle":
        return _regular(cx, cy + 0.15 * r, 1.15 * r, 3, a)
    if sprite.shape == "hexagon":
        return _regular(cx, cy, r, 6, a)
    if sprite.shape == "diamond":
        return _rotate(
            [(cx, cy - r), (cx + 0.6 * r, cy), (cx, cy + r), (cx - 0.6 * r, cy)], cx, cy, a
        )
    if sprite.shape == "star":
        outer, inner = _regular(cx, cy, 1.15 * r, 5, a), _regular(cx, cy, 0.5 * r, 5, a + 36)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    raise ValueError(f"unknown shape {sprite.shape!r}; valid: {', '.join(SHAPES)}")


def draw(sprites: Sequence[Sprite], size: int = 64, background: int = 255) -> Image.Image:
    """Draw ``sprites`` in order (later on top) on a grey ``background``.

    Returns:
        A ``size`` x ``size`` RGB image.
    """
    big = Image.new("RGB", (size * SUPERSAMPLE, size * SUPERSAMPLE), (background,) * 3)
    pen = ImageDraw.Draw(big)
    for sprite in sprites:
        if sprite.colour not in COLOURS:
            raise ValueError(f"unknown colour {sprite.colour!r}; valid: {', '.join(COLOURS)}")
        fill = COLOURS[sprite.colour]
        if sprite.shape == "circle":
            x, y, r = (v * SUPERSAMPLE for v in (sprite.x, sprite.y, sprite.radius))
            pen.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            pen.polygon(polygon(sprite, SUPERSAMPLE), fill=fill)
    return big.reduce(SUPERSAMPLE)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 planes of an RGB frame, packed as PyAV expects.

    We convert here instead of letting swscale do it: swscale picks SIMD or C code paths by
    buffer alignment, which rounds differently, so identical frames could encode differently.

    Args:
        rgb: ``[H, W, 3]`` uint8 with even H and W.

    Returns:
        ``[H * 3 // 2, W]`` uint8: the Y plane, then the U and V planes (each ``[H/2, W/2]``).
    """
    height, width = rgb.shape[:2]
    x = rgb.astype(np.float32)
    y = 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0
    u = 128.0 + (-37.797 * x[..., 0] - 74.203 * x[..., 1] + 112.0 * x[..., 2]) / 255.0
    v = 128.0 + (112.0 * x[..., 0] - 93.786 * x[..., 1] - 18.214 * x[..., 2]) / 255.0
    # 2x2 block means for the chroma planes: [H, W] -> [H/2, 2, W/2, 2] -> [H/2, W/2]
    u, v = (c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for c in (u, v))
    planes = [y.reshape(-1), u.reshape(-1), v.reshape(-1)]
    packed: np.ndarray = np.clip(np.rint(np.concatenate(planes)), 0, 255).astype(np.uint8)
    return packed.reshape(height * 3 // 2, width)


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = 8) -> None:
    """Write RGB frames ``[H, W, 3]`` uint8 (H, W even) as a lossless H.264 MP4 (yuv420p).

    Lossless (``qp=0``) because libx264's lossy mode decisions are not reproducible from call to
    call (rarely, but it happens), while the decoded frames of a lossless stream are exactly our
    YUV planes whatever the encoder decides. Flat synthetic frames stay small (~3 KB a clip).
    """
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "veryfast", "qp": "0"}
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(pixels), format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
