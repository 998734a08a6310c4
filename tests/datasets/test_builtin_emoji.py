"""Emoji: parsing, the unseen-emoji split rule, rendering and determinism."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from builtin_helpers import all_rows, read_card, read_rows
from PIL import Image

from omnifuse.datasets import MissingResourceError, emoji, make

SIZE = 12


@pytest.fixture(scope="module")
def entries() -> list[emoji.EmojiEntry]:
    return emoji.read_emoji_test()


def test_reads_every_fully_qualified_emoji(entries: list[emoji.EmojiEntry]) -> None:
    assert len(entries) == 3655
    assert len({e.group for e in entries}) == 9
    assert "Component" not in {e.group for e in entries}
    first = entries[0]
    assert (first.char, first.name, first.group, first.subgroup) == (
        "😀",
        "grinning face",
        "Smileys & Emotion",
        "face-smiling",
    )
    assert len({e.id for e in entries}) == len(entries)


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("waving hand: medium skin tone", "waving hand"),
        ("man: light skin tone, red hair", "man: red hair"),
        ("kiss: woman, man, medium-dark skin tone, dark skin tone", "kiss: woman, man"),
        ("flag: Germany", "flag: Germany"),
        ("grinning face", "grinning face"),
    ],
)
def test_split_unit_drops_only_skin_tones(name: str, unit: str) -> None:
    entry = emoji.EmojiEntry("1F600", "x", "1.0", name, "g", "s")
    assert entry.unit == unit


def test_split_keeps_test_emoji_out_of_training(entries: list[emoji.EmojiEntry]) -> None:
    splits = emoji.assign_splits(entries, seed=0)
    units = {
        name: {e.unit for e, s in zip(entries, splits, strict=True) if s == name}
        for name in ("train", "val", "test")
    }
    assert not units["train"] & units["test"]
    assert not units["train"] & units["val"]
    assert not units["val"] & units["test"]
    fractions = {name: splits.count(name) / len(splits) for name in units}
    assert 0.75 < fractions["train"] < 0.85
    for name in units:  # every group is represented in every split
        groups = {e.group for e, s in zip(entries, splits, strict=True) if s == name}
        assert len(groups) == 9
    assert emoji.assign_splits(entries, seed=0) == splits
    assert emoji.assign_splits(entries, seed=1) != splits


def test_rendered_images_show_the_emoji(generated: Callable[..., Path]) -> None:
    root = generated("emoji", SIZE, workers=1)
    rows = all_rows(root)
    assert len(rows) == SIZE
    for row in rows:
        with Image.open(root / row["image"]) as image:
            assert (image.size, image.mode) == ((64, 64), "RGB")
            pixels = np.asarray(image, dtype=int)
        assert (pixels < 200).any(axis=-1).mean() > 0.05, row["text"]  # not a blank canvas
        assert tuple(pixels[0, 0]) == (255, 255, 255)  # white background
        assert row["text"] == row["caption"]
    card = read_card(root)
    assert {row["label"] for row in rows} <= set(card["fields"]["label"]["classes"])
    assert "skin-tone variants form one unit" in card["description"]


def test_same_seed_gives_identical_dataset(generated: Callable[..., Path], tmp_path: Path) -> None:
    root = generated("emoji", SIZE, workers=1)
    again = make("emoji", tmp_path, size=SIZE, progress=False, workers=1).parent
    for split in read_rows(root):
        assert (root / f"{split}.jsonl").read_bytes() == (again / f"{split}.jsonl").read_bytes()
    for row in all_rows(root):
        assert (root / row["image"]).read_bytes() == (again / row["image"]).read_bytes()


def test_missing_font_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(emoji, "FONT", tmp_path / "NoFont.ttf")
    with pytest.raises(MissingResourceError, match="apt-get install fonts-noto-color-emoji"):
        make("emoji", tmp_path / "out", size=2, progress=False, workers=1)
