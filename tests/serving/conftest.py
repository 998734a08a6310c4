"""Fixtures of the serving tests: the tiny run of tests/inference served by a TestClient."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

# The run builder lives with the inference tests (tests/ has no __init__.py files).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))

from tiny_run import build_tiny_run, one_thread

from omnifuse.inference import Pipeline
from omnifuse.serving import ServeSettings, create_app


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread (see ``one_thread``); the model runs in the batcher's thread, which
    inherits torch's global setting."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with one_thread():
        return build_tiny_run(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def pipe(tiny_run: Path) -> Pipeline:
    return Pipeline.load(tiny_run, device="cpu")


@pytest.fixture(scope="session")
def data_dir(tiny_run: Path) -> Path:
    return tiny_run.parent / "data"


@pytest.fixture(scope="session")
def val_rows(data_dir: Path) -> list[dict[str, str]]:
    lines = (data_dir / "val.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def png(data_dir: Path, val_rows: list[dict[str, str]]) -> bytes:
    """A real ShapesWorld image of the run's data."""
    return (data_dir / val_rows[0]["image"]).read_bytes()


@pytest.fixture(scope="session")
def wav(data_dir: Path, val_rows: list[dict[str, str]]) -> bytes:
    """A real speech clip of the run's data."""
    return (data_dir / val_rows[0]["audio"]).read_bytes()


@pytest.fixture()
def client(pipe: Pipeline) -> Iterator[TestClient]:
    """A client of the app over the tiny run (lifespan started and stopped per test)."""
    with TestClient(create_app(pipe, ServeSettings())) as c:
        yield c
