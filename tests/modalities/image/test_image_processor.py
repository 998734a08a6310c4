"""ImageProcessor: loading, exact preprocessing, augmentation switches and broken files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse.config.image import IMAGENET_MEAN, IMAGENET_STD, ImageProcessorConfig
from omnifuse.modalities.base import MediaError
from omnifuse.modalities.image import ImageProcessor

Media = dict[str, Callable[..., Path]]
AUGMENT = {"enabled": True, "crop_scale": (0.3, 0.6), "hflip": True, "color_jitter": 0.4}


def make(generator: torch.Generator | None = None, **fields: Any) -> ImageProcessor:
    return ImageProcessor(ImageProcessorConfig(image_size=32, **fields), generator)


def test_png_loads_to_exact_size(media: Media) -> None:
    path = media["png"]("a.png", size=(48, 40))
    out = make().load(path)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert make(resize_size=40).load(path).shape == (3, 32, 32)
    assert ImageProcessor(ImageProcessorConfig(image_size=16)).load(path).shape == (3, 16, 16)


def test_constant_image_normalisation_values() -> None:
    pixels = np.empty((40, 50, 3), dtype=np.uint8)
    pixels[...] = (255, 0, 128)
    out = make().load(pixels)
    expected = [
        (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
        (0.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
        (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2],
    ]
    for channel, value in enumerate(expected):
        torch.testing.assert_close(out[channel], torch.full((32, 32), value), atol=1e-5, rtol=0)


def test_custom_mean_std() -> None:
    out = make(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).load(np.zeros((8, 8, 3), np.uint8))
    torch.testing.assert_close(out, torch.full((3, 32, 32), -1.0))


def test_path_pil_and_array_inputs_agree(media: Media) -> None:
    path = media["png"]("a.png")
    processor = make()
    from_path = processor.load(path)
    with Image.open(path) as image:
        from_pil = processor.load(image.copy())
        from_array = processor.load(np.asarray(image.convert("RGB")))
    torch.testing.assert_close(from_pil, from_path)
    torch.testing.assert_close(from_array, from_path)
    torch.testing.assert_close(processor.load(str(path)), from_path)


def test_grey_and_rgba_files_become_three_channels(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 20), 200, dtype=np.uint8)).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((20, 20, 4), dtype=np.uint8), mode="RGBA").save(rgba)
    processor = make(mean=(0, 0, 0), std=(1, 1, 1))
    torch.testing.assert_close(processor.load(grey), torch.full((3, 32, 32), 200 / 255))
    # A fully transparent image reads as white paper, not black.
    torch.testing.assert_close(processor.load(rgba), torch.ones(3, 32, 32))


def test_augmentation_only_when_training(media: Media) -> None:
    path = media["png"]("a.png", size=(64, 48))
    reference = make().load(path)
    processor = make(augment=AUGMENT)
    torch.testing.assert_close(processor.load(path), reference)  # eval mode: deterministic
    processor.train()
    assert processor.augmenting
    first, second = processor.load(path), processor.load(path)
    assert first.shape == (3, 32, 32)
    assert not torch.allclose(first, reference) and not torch.allclose(first, second)
    processor.eval()
    torch.testing.assert_close(processor.load(path), reference)


def test_training_without_augment_is_deterministic(media: Media) -> None:
    path = media["png"]("a.png")
    processor = make(augment={**AUGMENT, "enabled": False})
    processor.train()
    assert not processor.augmenting
    torch.testing.assert_close(processor.load(path), make().load(path))


def test_seeded_generator_reproduces_augmentation(media: Media) -> None:
    path = media["png"]("a.png")
    outs = [
        make(torch.Generator().manual_seed(7), augment=AUGMENT).train().load(path) for _ in range(2)
    ]
    torch.testing.assert_close(outs[0], outs[1])


def test_hflip_mirrors_about_half_the_time(tmp_path: Path) -> None:
    path = tmp_path / "square.png"
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    plain = make().load(path)
    aug = {"enabled": True, "crop_scale": (1.0, 1.0), "hflip": True}
    processor = make(torch.Generator().manual_seed(0), augment=aug).train()
    flips = []
    for _ in range(20):
        out = processor.load(path)
        is_flip = torch.allclose(out, plain.flip(-1), atol=1e-5)
        assert is_flip or torch.allclose(out, plain, atol=1e-5)
        flips.append(is_flip)
    assert 0 < sum(flips) < 20


def test_missing_file_raises_media_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(MediaError, match="file not found") as info:
        make().load(path)
    assert info.value.source == str(path)


def test_truncated_png_raises_media_error(media: Media, tmp_path: Path) -> None:
    data = media["png"]("a.png").read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"broken\.png: cannot decode image") as info:
        make().load(broken)
    assert info.value.source == str(broken)


def test_text_file_named_png_raises_media_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("definitely not an image\n")
    with pytest.raises(MediaError, match=r"fake\.png: not a readable image"):
        make().load(fake)


def test_bad_arrays_and_types_are_rejected() -> None:
    with pytest.raises(MediaError, match="dtype is float32; expected uint8"):
        make().load(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(MediaError, match=r"shape is \(8, 8, 2\)"):
        make().load(np.zeros((8, 8, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="valid inputs: a path, a PIL image"):
        make().load(42)  # type: ignore[arg-type]


def test_collate_and_call(media: Media) -> None:
    processor = make()
    batch = processor([media["png"]("a.png"), media["png"]("b.png", seed=3)])
    assert list(batch) == ["pixel_values"]
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert not torch.allclose(batch["pixel_values"][0], batch["pixel_values"][1])
    with pytest.raises(ValueError, match="different shapes"):
        processor.collate([torch.zeros(3, 32, 32), torch.zeros(3, 16, 16)])
    with pytest.raises(ValueError, match="empty"):
        processor.collate([])


def test_config_rejects_resize_smaller_than_crop() -> None:
    with pytest.raises(ValueError, match="resize_size=16 is smaller than image_size=32"):
        ImageProcessorConfig(image_size=32, resize_size=16)
    with pytest.raises(ValueError, match="crop_scale"):
        ImageProcessorConfig(augment={"crop_scale": (0.9, 0.5)})
