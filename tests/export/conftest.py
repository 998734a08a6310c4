"""Fixtures of the export tests: the tiny run of tests/inference, exported once via the CLI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from export_helpers import build_video_run
from typer.testing import CliRunner

# The run builder lives with the inference tests (tests/ has no __init__.py files).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))

from tiny_run import build_tiny_run, one_thread

from omnifuse.cli.main import app
from omnifuse.inference import Pipeline


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tests of this directory run with one intra-op thread (see ``one_thread``)."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def export_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run dir: one task per type except video (no training)."""
    with one_thread():
        return build_tiny_run(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def exported(export_run: Path) -> tuple[Path, str]:
    """``omnifuse export RUN --format onnx --out DIR``: the directory and the command output."""
    out = export_run.parent / "onnx"
    with one_thread():
        result = CliRunner().invoke(app, ["export", str(export_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="session")
def export_pipe(export_run: Path) -> Pipeline:
    return Pipeline.load(export_run, device="cpu")


@pytest.fixture(scope="session")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset with a small video generator head and a video_generation task."""
    return build_video_run(tmp_path_factory.mktemp("export-video"))
