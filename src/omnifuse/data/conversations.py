"""The conversation format (LLaMA-Factory / ms-swift / TRL) -> an omnifuse manifest.

A source row is a JSON object::

    {"messages": [{"role": "user", "content": "<image>What colour is the square?"},
                  {"role": "assistant", "content": "Red."}],
     "images": ["img/0.png"], "audios": [], "videos": []}

Also read: ShareGPT's ``conversations`` with ``from``/``value`` (``human``, ``gpt``,
``system``), and TRL's structured contents (``[{"type": "image"}, {"type": "text", "text":
...}]``, flattened to text with an ``<image>`` placeholder). Each row becomes a manifest row
``{"id", "image", "audio", "video", "messages"}``: omnifuse samples hold at most one file per
modality, so a row with two images (or audios, videos) is left out, and so is one whose
placeholders do not match its files. The ``messages`` field keeps the placeholders (the
``instruction`` task strips them and puts the media positions first).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnifuse.data.card import FieldSpec
from omnifuse.data.manifest import check_messages

if TYPE_CHECKING:
    from omnifuse.data.importers import ImportOptions, ImportSummary, _Sample

MEDIA_COLUMNS = {"images": "image", "audios": "audio", "videos": "video"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
SHAREGPT_ROLES["system"] = "system"


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """``(line, row)`` of a JSONL file, or of a JSON file holding a list of rows."""
    from omnifuse.data.importers import DatasetImportError

    if not path.is_file():
        raise DatasetImportError(f"{path}: conversation file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            rows = json.loads(text)
            if not isinstance(rows, list):
                raise DatasetImportError(f"{path}: a .json source must hold a list of rows")
            return list(enumerate(rows, start=1))
        return [
            (n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()
        ]
    except json.JSONDecodeError as err:
        raise DatasetImportError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None


def _content(value: Any) -> str:
    """A message content as text (TRL's typed parts flattened; media parts as placeholders)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [
            f"<{p['type']}>" if p.get("type") != "text" else str(p.get("text", "")) for p in value
        ]
        return "".join(parts)
    raise ValueError(f"content must be a string or a list of parts, got {type(value).__name__}")


def normalise_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """``messages`` (role/content) or ShareGPT ``conversations`` (from/value) -> messages."""
    if "messages" in row:
        return [
            {"role": str(m["role"]), "content": _content(m["content"])} for m in row["messages"]
        ]
    if "conversations" in row:
        turns = row["conversations"]
        return [
            {"role": SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]} for t in turns
        ]
    raise ValueError("a row needs `messages` (or ShareGPT `conversations`)")


def _problem(messages: list[dict[str, str]], row: dict[str, Any]) -> str | None:
    """Why a well-formed row cannot become one omnifuse sample (None: it can)."""
    for column, modality in MEDIA_COLUMNS.items():
        files = row.get(column) or []
        if len(files) > 1:
            return f"rows with more than one {modality}"
        used = sum(m["content"].count(f"<{modality}>") for m in messages)
        if used and used != len(files):
            return f"rows whose <{modality}> placeholders do not match their {column}"
    return None


def import_conversations(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """Conversation rows (JSONL, or a JSON list) -> manifests + card; media paths are relative
    to ``media_root`` (default: SRC's directory). Splits are by sample."""
    from omnifuse.data.importers import (
        DatasetImportError,
        ImportOptions,
        _media_ref,
        _require_files,
        _Sample,
        write_dataset,
    )

    options = options or ImportOptions()
    root = media_root or src.parent
    samples: list[_Sample] = []
    skipped: Counter[str] = Counter()
    for line, row in read_rows(src):
        try:
            messages = normalise_messages(row)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DatasetImportError(f"{src}:{line}: malformed conversation: {err}") from None
        kind, message = check_messages(messages)
        if kind:
            raise DatasetImportError(f"{src}:{line}: messages {message}")
        reason = _problem(messages, row)
        if reason is not None:
            skipped[reason] += 1
            continue
        record: dict[str, Any] = {"id": str(row.get("id") or f"{src.stem}-{line}")}
        for column, modality in MEDIA_COLUMNS.items():
            for rel in row.get(column) or []:
                _require_files([root / rel], f"{src}:{line}")
                record[modality] = _media_ref(root / rel, out, f"{modality}/{rel}", options)
        record["messages"] = messages
        samples.append(_Sample(record, group=record["id"]))
    duplicates = [k for k, n in Counter(s.row["id"] for s in samples).items() if n > 1]
    if duplicates:
        raise DatasetImportError(f"{src}: duplicate ids {duplicates[:5]}")
    fields = {
        modality: FieldSpec(type=modality, description=f"The {modality} the conversation is about.")
        for modality in MEDIA_COLUMNS.values()
        if any(modality in s.row for s in samples)
    }
    fields["messages"] = FieldSpec(type="messages", description="The conversation (role, content).")
    return write_dataset(out, samples, fields, "conversations", str(src), options, dict(skipped))
