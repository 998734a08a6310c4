"""Text corpora from manifests: the file a word-piece/BPE tokenizer trains on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from omnifuse.data.manifest import ManifestError, Problem


def write_corpus(manifest: Path, fields: Sequence[str], out: Path) -> int:
    """Write every non-empty text of ``fields`` (strings or lists of strings) in ``manifest``,
    one per line, to ``out``; returns the number of lines.

    Raises:
        ManifestError: a line that is not JSON, or none of ``fields`` holds any text.
    """
    lines: list[str] = []
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problem = Problem(str(manifest), number, None, "invalid_json", f"not JSON: {err.msg}")
            raise ManifestError([problem]) from None
        for name in fields:
            value = row.get(name)
            texts = value if isinstance(value, list) else [value]
            lines += [" ".join(t.split()) for t in texts if isinstance(t, str) and t.strip()]
    if not lines:
        message = f"no text in fields {list(fields)}"
        raise ManifestError([Problem(str(manifest), 0, None, "no_text", message)])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return len(lines)
