"""Fixtures of the data-infrastructure tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_helpers import write_jsonl


@pytest.fixture
def text_manifest(tmp_path: Path) -> Callable[..., Path]:
    """``text_manifest(n, name=...)``: a manifest of ``n`` text samples with 3 labels."""

    def make(n: int, name: str = "train.jsonl") -> Path:
        rows = [{"id": f"s{i:03d}", "text": f"sample {i}", "label": "abc"[i % 3]} for i in range(n)]
        return write_jsonl(tmp_path / name, rows)

    return make
