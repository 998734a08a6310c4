"""Fixtures of the inference tests: one tiny run directory (no training) and its pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_run import build_tiny_run, one_thread

from omnifuse.inference import Pipeline


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tests of this directory run with one intra-op thread (see ``one_thread``)."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir (config.yaml + model/) over a 24-sample ShapesWorld, one task per type."""
    with one_thread():
        return build_tiny_run(tmp_path_factory.mktemp("inference"))


@pytest.fixture(scope="session")
def pipe(tiny_run: Path) -> Pipeline:
    """The tiny run, loaded once (tests must not modify it)."""
    return Pipeline.load(tiny_run, device="cpu")


@pytest.fixture(scope="session")
def data_dir(tiny_run: Path) -> Path:
    """The ShapesWorld directory of the tiny run."""
    return tiny_run.parent / "data"
