"""Marked Markdown sections: several scripts write into one document (``docs/benchmarks.md``,
``docs/results.md``), each replacing only its own section between HTML comment markers.

Nothing here knows where the repository is: callers pass the document's path (the studies and
recipes take ``--results-file``, default inside their output directory), so running from any
directory never writes into a checkout's ``docs/``."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

RESULTS_HEADER = "# Results\n\nMeasured on this project's CI-class machine (2 CPU cores, no GPU).\n"


def machine() -> str:
    """One line describing where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def write_section(path: Path, name: str, body: str, header: str = "") -> None:
    """Replace (or append) the section between ``<!-- begin:name -->`` and ``<!-- end:name -->``
    of ``path``; a missing file starts with ``header``."""
    text = path.read_text() if path.exists() else header
    block = f"<!-- begin:{name} -->\n{body.rstrip()}\n<!-- end:{name} -->"
    pattern = re.compile(
        rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
