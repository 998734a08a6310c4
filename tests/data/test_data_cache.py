"""The in-memory media cache (``data.cache_mb``): hits, staleness, augmentation, budget."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_helpers import write_jsonl
from PIL import Image

from omnifuse.config.data import DataConfig
from omnifuse.config.image import ImageProcessorConfig
from omnifuse.data.datamodule import build_loader
from omnifuse.data.decode import MEDIA_CACHE, MediaCache, SampleDecoder
from omnifuse.data.sources import RawSample
from omnifuse.data.streaming import EpochPlan, PlanBoard
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


class LoggedImageProcessor(ImageProcessor):
    """An image processor that appends ``<pid> <file name>`` to ``log`` at every decode, so a
    test can count the decodes of DataLoader worker processes."""

    def __init__(self, config: ImageProcessorConfig, log: Path) -> None:
        super().__init__(config)
        self.log = log

    def load(self, raw: Any) -> torch.Tensor:
        with self.log.open("a") as handle:  # one short O_APPEND write: lines never interleave
            handle.write(f"{os.getpid()} {Path(raw).name}\n")
        return super().load(raw)


IMAGE_BYTES = 3 * 16 * 16 * 4
"""One processed 16-px image."""


@pytest.fixture
def budget() -> Iterator[None]:
    """Restore the cache budget that a test sets directly (``reserve`` can only raise it)."""
    limit = MEDIA_CACHE.limit_bytes
    yield
    MEDIA_CACHE.limit_bytes = limit


def image_manifest(root: Path, n: int) -> Path:
    rows = [{"id": f"s{i}", "image": png(root / f"{i}.png", 10 * i).name} for i in range(n)]
    return write_jsonl(root / "train.jsonl", rows)


def decodes_per_epoch(
    tmp_path: Path, cache_mb: int, epochs: int, limit_bytes: int | None = None
) -> list[list[str]]:
    """Train-mode epochs of a 12-image manifest with 2 persistent workers; the decode log lines
    (``pid name``) of each epoch (sorted), and every epoch holds every sample once.
    ``limit_bytes`` sets the cache budget the workers inherit (below what ``cache_mb`` reserves)."""
    manifest, log = image_manifest(tmp_path, 12), tmp_path / "decodes.log"
    processor = LoggedImageProcessor(ImageProcessorConfig(image_size=16), log)
    data = DataConfig(batch_size=4, num_workers=2, cache_mb=cache_mb)
    loader = build_loader(manifest, {"image": processor}, {}, data, train=True)
    if limit_bytes is not None:
        MEDIA_CACHE.limit_bytes = limit_bytes
    lines: list[list[str]] = []
    for _ in range(epochs):
        before = len(log.read_text().splitlines()) if log.exists() else 0
        ids = [i for batch in loader for i in batch["ids"]]
        assert sorted(ids) == sorted(f"s{i}" for i in range(12))
        lines.append(sorted(log.read_text().splitlines()[before:]) if log.exists() else [])
    loader.close()
    return lines


def test_persistent_workers_read_later_epochs_from_the_cache(tmp_path: Path, budget: None) -> None:
    first, second, third = decodes_per_epoch(tmp_path, cache_mb=1, epochs=3)
    assert len(first) == 12 and len({line.split()[0] for line in first}) == 2  # both workers
    assert second == [] and third == []


def test_each_worker_caches_its_own_share_within_its_part_of_the_budget(
    tmp_path: Path, budget: None
) -> None:
    # Room for 6 images in all: each of the 2 workers may keep 3 of the 6 it reads, so 6 are
    # decoded again in every later epoch (12 would fit if each worker had the whole budget).
    first, second, third = decodes_per_epoch(tmp_path, 1, epochs=3, limit_bytes=6 * IMAGE_BYTES)
    assert (len(first), len(second), len(third)) == (12, 6, 6)
    assert second == third  # the same uncached samples, on the same workers


def test_without_the_cache_every_epoch_decodes_the_same_share_per_worker(tmp_path: Path) -> None:
    first, second = decodes_per_epoch(tmp_path, cache_mb=0, epochs=2)
    assert len(first) == len(second) == 12

    def shares(lines: list[str]) -> set[frozenset[str]]:
        pids = {line.split()[0] for line in lines}
        return {frozenset(n for p, n in map(str.split, lines) if p == pid) for pid in pids}

    assert shares(first) == shares(second)  # the same workers, the same samples each


def test_the_plan_board_round_trips_a_plan() -> None:
    board = PlanBoard(3)
    plan = EpochPlan(epoch=4, rank=1, world_size=2, num_workers=3, rotation=2, starts=(5, 0, 7))
    board.write(plan)
    assert board.read() == plan
