"""Fixtures of the evaluation tests: the tiny run of tests/inference, evaluated once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The run builder lives with the inference tests (tests/ has no __init__.py files).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))

from tiny_run import build_tiny_run, one_thread

from omnifuse.evaluation import EvalOptions, evaluate

METRICS_CSV = """epoch,step,train/loss,train/shape/accuracy,val/loss,lr-AdamW
0,0,2.5,0.2,,0.001
0,1,2.0,0.3,,0.001
0,2,1.5,0.5,1.7,0.001
"""


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tests of this directory run with one intra-op thread (see ``one_thread``)."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run dir with a Lightning-style ``metrics/metrics.csv``, as training writes it."""
    with one_thread():
        run = build_tiny_run(tmp_path_factory.mktemp("evaluation"))
    (run / "metrics").mkdir()
    (run / "metrics" / "metrics.csv").write_text(METRICS_CSV)
    return run


@pytest.fixture(scope="session")
def evaluated(eval_run: Path) -> dict[str, Any]:
    """``evaluate(run)`` on the val split (2 samples), captions scored without Java."""
    with one_thread():
        options = EvalOptions(caption_tokenizer="simple")
        return evaluate(eval_run, options=options, device="cpu")
