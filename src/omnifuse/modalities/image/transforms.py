"""Per-frame image transforms shared by the image and video processors.

Everything works on PIL images until the last step (:func:`to_tensor`), so resizing uses
Pillow's antialiased bicubic filter. Random choices come from a ``torch.Generator`` when one is
given, otherwise from torch's global generator (which ``DataLoader`` seeds differently in each
worker, so workers do not repeat each other's augmentations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from omnifuse.config.image import FrameConfig

Box = tuple[float, float, float, float]
"""A crop box ``(left, top, right, bottom)`` in source-image pixels."""

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# ITU-R 601 luma weights, the ones PIL uses for convert("L").
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentParams:
    """Random choices of one augmentation draw, applied identically to every frame of a clip.

    Attributes:
        box: crop box in source pixels, resized to the output size.
        flip: mirror horizontally.
        jitter: (brightness, contrast, saturation) factors, 1.0 = unchanged; None = no jitter.
    """

    box: Box
    flip: bool
    jitter: tuple[float, float, float] | None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB.

    Transparent pixels are composited on white (so a transparent background reads as paper,
    not as the black that dropping alpha would give). 16-bit greyscale is scaled to 8 bits
    rather than clipped, which is what ``convert("RGB")`` alone would do.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        levels = np.asarray(image, dtype=np.float32) / 257.0  # 65535 / 255
        image = Image.fromarray(np.clip(levels.round(), 0, 255).astype(np.uint8))
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize so that the shorter side is ``size``, keeping the aspect ratio."""
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.BICUBIC)


MAX_ASPECT = 8
"""Longest side kept around the centre, in shorter sides, before the deterministic resize."""


def trim_aspect(image: Image.Image, max_aspect: int = MAX_ASPECT) -> Image.Image:
    """Crop the long side to ``max_aspect`` times the short side, centred.

    A 1 x 50,000 strip would otherwise be upscaled to 64 x 3,200,000 before the centre crop
    keeps 64 x 64 of it; the pixels cut here are far outside that crop, so results on ordinary
    images do not change.
    """
    width, height = image.size
    short = min(width, height)
    if max(width, height) <= max_aspect * short:
        return image
    keep = max_aspect * short
    left, top = (width - min(width, keep)) // 2, (height - min(height, keep)) // 2
    return image.crop((left, top, left + min(width, keep), top + min(height, keep)))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size x size`` square (the image must be at least that large)."""
    width, height = image.size
    left = round((width - size) / 2)
    top = round((height - size) / 2)
    return image.crop((left, top, left + size, top + size))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    generator: torch.Generator | None = None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Box:
    """A crop covering a random ``scale`` fraction of the area with a random aspect ratio.

    Aspect ratios are drawn log-uniformly (Inception-style); after ``attempts`` misses the
    largest centred crop with a clamped ratio is used.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        crop_w, crop_h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if crop_w <= width and crop_h <= height:
            left = _uniform(0.0, width - crop_w, generator)
            top = _uniform(0.0, height - crop_h, generator)
            return (left, top, left + crop_w, top + crop_h)
    aspect = min(max(width / height, ratio[0]), ratio[1])
    crop_w, crop_h = min(width, height * aspect), min(height, width / aspect)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def to_tensor(image: Image.Image | np.ndarray[Any, Any]) -> Tensor:
    """RGB PIL image or uint8 ``[..., H, W, 3]`` array -> ``[..., 3, H, W]`` float32 in [0, 1]
    (a stack of frames converts in one call)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (..., H, W, 3)
    return pixels.movedim(-1, -3).float() / 255.0


def normalize(pixels: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``(pixels - mean) / std`` per channel; ``[..., 3, H, W] -> [..., 3, H, W]``."""
    mean_t = torch.tensor(mean, dtype=pixels.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype).view(-1, 1, 1)
    return (pixels - mean_t) / std_t


def _luma(pixels: Tensor) -> Tensor:
    """``[3, H, W] -> [1, H, W]`` grey level."""
    weights = torch.tensor(_LUMA, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels * weights).sum(dim=0, keepdim=True)


def color_jitter(pixels: Tensor, factors: tuple[float, float, float]) -> Tensor:
    """Scale brightness, contrast and saturation of ``[3, H, W]`` pixels in [0, 1].

    Contrast blends towards the mean grey level, saturation towards each pixel's grey level;
    results are clamped to [0, 1] after each step, as photographic adjustments would be.
    """
    brightness, contrast, saturation = factors
    pixels = (pixels * brightness).clamp(0.0, 1.0)
    grey = _luma(pixels).mean()
    pixels = ((pixels - grey) * contrast + grey).clamp(0.0, 1.0)
    grey_map = _luma(pixels)
    return ((pixels - grey_map) * saturation + grey_map).clamp(0.0, 1.0)


class FrameTransform:
    """RGB PIL image -> normalised ``[3, S, S]`` tensor, deterministic or augmented.

    Without :class:`AugmentParams`: resize the shorter side to ``resize_size`` (bicubic),
    centre-crop ``image_size``. With them: crop ``params.box`` resized to ``image_size``, optional
    flip and colour jitter. Then scale to [0, 1] and normalise with ``mean``/``std``.

    Args:
        config: the frame preprocessing settings.
    """

    def __init__(self, config: FrameConfig) -> None:
        self.config = config
        self.image_size = config.image_size
        self.resize_size = config.image_size if config.resize_size is None else config.resize_size

    def sample(
        self, width: int, height: int, generator: torch.Generator | None = None
    ) -> AugmentParams:
        """Draw augmentation choices for a source of ``width x height`` pixels."""
        augment = self.config.augment
        box = random_resized_crop_box(width, height, augment.crop_scale, generator)
        flip = augment.hflip and _uniform(0.0, 1.0, generator) < 0.5
        jitter = None
        if augment.color_jitter > 0:
            low, high = 1.0 - augment.color_jitter, 1.0 + augment.color_jitter
            jitter = (
                _uniform(low, high, generator),
                _uniform(low, high, generator),
                _uniform(low, high, generator),
            )
        return AugmentParams(box=box, flip=flip, jitter=jitter)

    def __call__(self, image: Image.Image, params: AugmentParams | None = None) -> Tensor:
        """Transform one RGB image. Returns ``[3, image_size, image_size]``."""
        return self.finish(to_tensor(self.geometry(image, params)), params)

    def geometry(self, image: Image.Image, params: AugmentParams | None = None) -> Image.Image:
        """The pixel-moving part, in PIL: resize + crop (+ flip). Returns an
        ``image_size x image_size`` RGB image."""
        if params is None:
            image = resize_shorter(trim_aspect(image), self.resize_size)
            return center_crop(image, self.image_size)
        size = (self.image_size, self.image_size)
        image = image.resize(size, Image.Resampling.BICUBIC, box=params.box)
        if params.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def finish(self, pixels: Tensor, params: AugmentParams | None = None) -> Tensor:
        """Colour jitter (if drawn) and normalisation of :meth:`geometry`'s output as floats.

        Args:
            pixels: ``[3, S, S]`` in [0, 1], or a clip's frames ``[T, 3, S, S]`` (one tensor
                op for the clip; jitter still uses each frame's own mean grey level).

        Returns:
            The same shape, normalised with ``mean``/``std``.
        """
        if params is not None and params.jitter is not None:
            jitter = params.jitter
            if pixels.dim() == 4:
                pixels = torch.stack([color_jitter(frame, jitter) for frame in pixels])
            else:
                pixels = color_jitter(pixels, jitter)
        return normalize(pixels, self.config.mean, self.config.std)
