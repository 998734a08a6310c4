"""The in-memory media cache (``data.cache_mb``): hits, staleness, augmentation, budget."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse.config.image import ImageProcessorConfig
from omnifuse.data.decode import MEDIA_CACHE, MediaCache, SampleDecoder
from omnifuse.data.sources import RawSample
from omnifuse.modalities.image.processor import ImageProcessor


def png(path: Path, value: int) -> Path:
    Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(path)
    return path


def raw(path: Path) -> RawSample:
    return RawSample("s", {}, {"image": path}, f"{path}:1")


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    MEDIA_CACHE.clear()


def decoder(augment: bool = False, training: bool = False) -> SampleDecoder:
    config = ImageProcessorConfig(image_size=16, augment={"enabled": augment})
    return SampleDecoder({"image": ImageProcessor(config)}, {}, training=training, cache=True)


def test_second_load_is_a_hit_with_the_same_pixels(tmp_path: Path) -> None:
    MEDIA_CACHE.reserve(2**20)
    path = png(tmp_path / "a.png", 10)
    first = decoder().decode(raw(path)).inputs["image"]
    second = decoder().decode(raw(path)).inputs["image"]  # another stream, same processor config
    assert (MEDIA_CACHE.misses, MEDIA_CACHE.hits) == (1, 1)
    assert torch.equal(first, second)
    assert MEDIA_CACHE.used_bytes == first.numel() * 4


def test_a_changed_file_is_reloaded(tmp_path: Path) -> None:
    MEDIA_CACHE.reserve(2**20)
    path = png(tmp_path / "a.png", 10)
    before = decoder().decode(raw(path)).inputs["image"]
    png(path, 200)
    os.utime(path, ns=(0, 123))  # a new mtime even on coarse filesystem clocks
    after = decoder().decode(raw(path)).inputs["image"]
    assert MEDIA_CACHE.hits == 0 and not torch.equal(before, after)


def test_augmenting_loads_are_never_cached(tmp_path: Path) -> None:
    MEDIA_CACHE.reserve(2**20)
    path = png(tmp_path / "a.png", 10)
    for _ in range(2):
        decoder(augment=True, training=True).decode(raw(path))
    assert MEDIA_CACHE.used_bytes == 0 and MEDIA_CACHE.hits == 0
    decoder(augment=True, training=False).decode(raw(path))  # eval mode: deterministic
    assert MEDIA_CACHE.used_bytes > 0


def test_the_budget_is_respected() -> None:
    cache = MediaCache(limit_bytes=100)
    cache.put(("a",), torch.zeros(20))  # 80 bytes
    cache.put(("b",), torch.zeros(20))  # would exceed 100
    assert cache.get(("a",)) is not None and cache.get(("b",)) is None
    assert cache.used_bytes == 80
