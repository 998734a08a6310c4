"""Per-frame transforms shared by the image and video processors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse.config.image import ImageProcessorConfig
from omnifuse.modalities.image.transforms import (
    AugmentParams,
    FrameTransform,
    center_crop,
    color_jitter,
    random_resized_crop_box,
    resize_shorter,
    to_rgb,
    to_tensor,
)


def test_to_rgb_composites_alpha_on_white() -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # fully transparent red -> white
    rgba[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, mode="RGBA")))
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [255, 0, 0]
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])


def test_to_rgb_handles_grey_palette_and_16_bit() -> None:
    grey = to_rgb(Image.fromarray(np.full((2, 2), 77, dtype=np.uint8)))
    assert grey.mode == "RGB" and np.asarray(grey)[0, 0].tolist() == [77, 77, 77]
    sixteen = Image.fromarray(np.array([[65535, 257 * 100]], dtype=np.uint16))
    assert sixteen.mode.startswith("I")
    assert np.asarray(to_rgb(sixteen))[0, :, 0].tolist() == [255, 100]
    palette = Image.fromarray(np.full((2, 2, 3), (10, 200, 30), dtype=np.uint8)).convert("P")
    palette.info["transparency"] = palette.getpixel((0, 0))  # that index transparent -> white
    assert np.asarray(to_rgb(palette))[0, 0].tolist() == [255, 255, 255]


def test_resize_shorter_and_center_crop_sizes() -> None:
    image = Image.new("RGB", (48, 40))
    resized = resize_shorter(image, 32)
    assert resized.size == (38, 32)
    assert center_crop(resized, 32).size == (32, 32)
    assert resize_shorter(Image.new("RGB", (20, 60)), 32).size == (32, 96)


def test_center_crop_takes_the_middle() -> None:
    pixels = np.zeros((10, 12, 3), dtype=np.uint8)
    pixels[3:7, 4:8] = 255
    cropped = np.asarray(center_crop(Image.fromarray(pixels), 4))
    assert (cropped == 255).all()


def test_random_resized_crop_box_respects_bounds_and_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        left, top, right, bottom = random_resized_crop_box(64, 48, (0.3, 0.6), gen)
        assert 0 <= left < right <= 64 and 0 <= top < bottom <= 48
        area = (right - left) * (bottom - top) / (64 * 48)
        assert 0.3 - 1e-9 <= area <= 0.6 + 1e-9
        assert 3 / 4 - 1e-9 <= (right - left) / (bottom - top) <= 4 / 3 + 1e-9
    again = random_resized_crop_box(64, 48, (0.3, 0.6), torch.Generator().manual_seed(5))
    assert again == random_resized_crop_box(64, 48, (0.3, 0.6), torch.Generator().manual_seed(5))


def test_random_resized_crop_box_falls_back_to_full_centre() -> None:
    # Full area with a non-square ratio never fits a square image: centred full crop.
    box = random_resized_crop_box(32, 32, (1.0, 1.0), torch.Generator().manual_seed(0))
    assert box == pytest.approx((0.0, 0.0, 32.0, 32.0))


def test_color_jitter_identity_and_brightness() -> None:
    pixels = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(color_jitter(pixels, (1.0, 1.0, 1.0)), pixels)
    torch.testing.assert_close(color_jitter(pixels, (0.5, 1.0, 1.0)), pixels * 0.5)
    flat = color_jitter(pixels, (1.0, 1.0, 0.0))  # zero saturation -> grey: channels equal
    torch.testing.assert_close(flat[0], flat[1])
    torch.testing.assert_close(flat[1], flat[2])


def test_frame_transform_applies_flip_and_box() -> None:
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[:, :12] = 255  # left three quarters white
    transform = FrameTransform(ImageProcessorConfig(image_size=16, mean=(0, 0, 0), std=(1, 1, 1)))
    image = Image.fromarray(pixels)
    plain = transform(image)
    torch.testing.assert_close(plain, to_tensor(image))
    flipped = transform(image, AugmentParams(box=(0, 0, 16, 16), flip=True, jitter=None))
    torch.testing.assert_close(flipped, plain.flip(-1))
    # The left half (all white, with margin for the bicubic support) fills the whole output.
    left = transform(image, AugmentParams(box=(0, 0, 8, 16), flip=False, jitter=None))
    assert left.shape == (3, 16, 16) and bool((left > 0.99).all())
    right = transform(image, AugmentParams(box=(12, 0, 16, 16), flip=False, jitter=None))
    assert bool((right < 0.5).any())
