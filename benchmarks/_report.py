"""Write one benchmark's Markdown section into docs/benchmarks.md, leaving the others intact."""

from __future__ import annotations

from pathlib import Path

from omnifuse_experiments import reporting
from omnifuse_experiments.reporting import machine

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nWritten by the scripts in `benchmarks/` (`make bench`); numbers are from "
    "the machine named in each section.\n"
)

__all__ = ["machine", "write_section"]


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    reporting.write_section(REPORT, name, body, HEADER)
