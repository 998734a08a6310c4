"""Image processor: file / PIL image / uint8 array -> normalised ``[3, S, S]`` tensor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from omnifuse.config.image import DEFAULT_MAX_PIXELS, ImageProcessorConfig, ViTConfig
from omnifuse.modalities.base import MediaError, Processor
from omnifuse.modalities.image.transforms import FrameTransform, to_rgb

ARRAY_SOURCE = "<array>"
"""The name :class:`MediaError` reports for in-memory inputs."""


def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file fully (so truncation shows up here) and apply its EXIF rotation.

    The size in the header is checked against ``max_pixels`` before any pixel is decoded.

    Raises:
        MediaError: the file is missing, not an image, too large, truncated or corrupt.
    """
    if Path(path).is_dir():
        raise MediaError(path, "is a directory, not an image file")
    try:
        with Image.open(path) as image:
            _check_pixels(path, image.width, image.height, max_pixels)
            image.load()
            return ImageOps.exif_transpose(image)
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError(path, "file not found") from None
    except UnidentifiedImageError:
        raise MediaError(path, "not a readable image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as err:  # Pillow's own limit (2 x 89 MP), from open()
        raise MediaError(path, f"{err}; image.processor.max_pixels={max_pixels:,}") from None
    # PIL reports broken or truncated data as OSError or SyntaxError depending on the codec.
    except (OSError, SyntaxError, ValueError) as err:
        raise MediaError(path, f"cannot decode image: {err}") from None


def _check_pixels(path: str | Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaError(
            path,
            f"image is {width}x{height} = {width * height:,} pixels, more than "
            f"image.processor.max_pixels={max_pixels:,}; refused before decoding "
            "(downscale it or raise the limit)",
        )
    if width == 0 or height == 0:
        raise MediaError(path, f"image is {width}x{height}: no pixels")


def image_from_array(array: np.ndarray[Any, Any], source: str = ARRAY_SOURCE) -> Image.Image:
    """A uint8 ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) array as PIL.

    Raises:
        MediaError: another dtype or shape.
    """
    if array.dtype != np.uint8:
        raise MediaError(source, f"array dtype is {array.dtype}; expected uint8 (0-255 values)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise MediaError(
            source, f"array shape is {array.shape}; expected [H, W], [H, W, 3] or [H, W, 4]"
        )
    if min(array.shape[:2]) == 0:
        raise MediaError(source, f"array shape {array.shape} has no pixels")
    return Image.fromarray(np.ascontiguousarray(array))


def as_rgb_image(
    raw: str | Path | Image.Image | np.ndarray[Any, Any], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open/convert any supported raw image input to an RGB PIL image."""
    if isinstance(raw, str | Path):
        image = open_image(raw, max_pixels)
    elif isinstance(raw, Image.Image):
        image = raw
    elif isinstance(raw, np.ndarray):
        image = image_from_array(raw)
    else:
        raise TypeError(
            f"cannot load an image from {type(raw).__name__}; "
            "valid inputs: a path, a PIL image or a uint8 numpy array"
        )
    return to_rgb(image)


class ImageProcessor(Processor[Tensor]):
    """Raw images -> ``{"pixel_values": [B, 3, S, S]}``.

    Any PIL mode becomes RGB first: transparent pixels are composited on white, 16-bit grey is
    scaled to 8 bits, EXIF rotation is applied to files.
    Evaluation: shorter side resized (bicubic) to ``resize_size``, centre crop ``image_size``,
    scaled to [0, 1], normalised by ``mean``/``std``. Training with ``augment.enabled``: random
    resized crop, optional horizontal flip and colour jitter instead of the fixed crop.

    Args:
        config: preprocessing settings.
        generator: source of augmentation randomness; None uses torch's global generator.
    """

    modality = "image"

    def __init__(
        self, config: ImageProcessorConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.generator = generator
        self.transform = FrameTransform(config)

    @property
    def augmenting(self) -> bool:
        """Whether :meth:`load` applies random augmentation now."""
        return self.training and self.config.augment.enabled

    def load(self, raw: str | Path | Image.Image | np.ndarray[Any, Any]) -> Tensor:
        """One image (path, PIL image or uint8 ``[H, W, 3]`` array) -> ``[3, S, S]`` float.

        Raises:
            MediaError: the input cannot be read as an image (names the path).
        """
        image = as_rgb_image(raw, self.config.max_pixels)
        params = None
        if self.augmenting:
            params = self.transform.sample(image.width, image.height, self.generator)
        return self.transform(image, params)

    def collate(self, samples: Sequence[Tensor]) -> dict[str, Tensor]:
        """``[3, S, S]`` samples -> ``{"pixel_values": [B, 3, S, S]}``."""
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of images")
        shapes = {tuple(s.shape) for s in samples}
        if len(shapes) > 1:
            raise ValueError(f"images have different shapes {sorted(shapes)}; expected one")
        return {"pixel_values": torch.stack(list(samples))}


def build_image_processor(config: ViTConfig) -> ImageProcessor:
    """The processor of an image encoder config."""
    return ImageProcessor(config.processor)
