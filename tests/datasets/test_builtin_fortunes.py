"""Fortunes: the clean category subset, text cleaning and stratified deterministic splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from builtin_helpers import all_rows, read_card, read_rows

from omnifuse.datasets import fortunes, make


@pytest.fixture(scope="module")
def full(generated: Callable[..., Path]) -> Path:
    return generated("fortunes", 100_000)  # more than there are: all texts


def test_labels_are_the_clean_categories(full: Path) -> None:
    rows = all_rows(full)
    assert {row["label"] for row in rows} == set(fortunes.CATEGORIES)
    assert read_card(full)["fields"]["label"]["classes"] == list(fortunes.CATEGORIES)
    assert 2600 < len(rows) < 2700
    texts = [row["text"] for row in rows]
    assert len(texts) == len(set(texts))
    assert not any("\b" in text or not text.strip() for text in texts)


def test_splits_are_stratified_by_category(full: Path) -> None:
    per_split = {name: Counter(r["label"] for r in rows) for name, rows in read_rows(full).items()}
    totals = per_split["train"] + per_split["val"] + per_split["test"]
    for category, total in totals.items():
        assert per_split["train"][category] / total == pytest.approx(0.8, abs=0.02), category
        assert per_split["test"][category] >= 1
    ids = [row["id"] for row in all_rows(full)]
    assert len(ids) == len(set(ids))


def test_same_seed_same_manifests_other_seed_other_split(full: Path, tmp_path: Path) -> None:
    again = make("fortunes", tmp_path / "a", progress=False).parent
    other = make("fortunes", tmp_path / "b", seed=1, progress=False).parent
    assert (full / "test.jsonl").read_bytes() == (again / "test.jsonl").read_bytes()
    test_ids = {row["id"] for row in read_rows(full)["test"]}
    assert test_ids != {row["id"] for row in read_rows(other)["test"]}


def test_size_takes_a_subset(tmp_path: Path) -> None:
    rows = all_rows(make("fortunes", tmp_path, size=100, progress=False).parent)
    assert len(rows) == 100
    assert len({row["label"] for row in rows}) >= 5


@pytest.mark.parametrize(
    ("line", "clean"),
    [
        ("_\bI satisfies", "I satisfies"),
        ("the notion of *_______\b\b\b\b\b\b\bfriends*", "the notion of *friends*"),
        ("plain text", "plain text"),
    ],
)
def test_overstrike_is_resolved(line: str, clean: str) -> None:
    assert fortunes.resolve_overstrike(line) == clean


def test_unknown_category_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown fortune categories.*available: .*computers"):
        make("fortunes", tmp_path, progress=False, categories=("computers", "nonsense"))
