"""Fixtures of the built-in dataset tests: generate each small dataset once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnifuse import datasets


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``generated(name, size, seed=0, **options)``: the dataset directory, made once per key."""
    cache: dict[tuple[Any, ...], Path] = {}

    def make_once(name: str, size: int, seed: int = 0, **options: Any) -> Path:
        key = (name, size, seed, tuple(sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{name}-{seed}")
            card = datasets.make(name, out, size=size, seed=seed, progress=False, **options)
            cache[key] = card.parent
        return cache[key]

    return make_once
