"""JSONL manifests: one sample per line, streamed and validated (errors name file, line, field).

A manifest line is a JSON object with an optional unique ``id`` (rows without one get
:func:`stable_id`: their line number and a hash of the row), optional modality inputs (``text`` as a
string; ``image``/``audio``/``video`` as paths relative to the manifest's directory) and any
number of target fields (``label``, ``caption``, ``captions``, ``answer`` ...). ``null`` means
"absent" (e.g. a sample without audio).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from omnifuse.config.base import MODALITIES

INPUT_FIELDS = MODALITIES
MEDIA_FIELDS = ("audio", "image", "video")
FIELD_TYPES = (
    "text",
    "image",
    "audio",
    "video",
    "class",
    "string",
    "strings",
    "int",
    "float",
    "messages",
)
MESSAGE_ROLES = ("system", "user", "assistant")
CONVENTIONAL_TYPES: dict[str, str] = {
    "text": "text",
    "image": "image",
    "audio": "audio",
    "video": "video",
    "label": "class",
    "caption": "string",
    "captions": "strings",
    "question": "string",
    "answer": "string",
    "question_type": "string",
    "transcript": "string",
    "messages": "messages",
}
"""Types of the conventional fields when no dataset card says otherwise."""

MAX_REPORTED = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest row (or the file itself when ``line`` is 0).

    Attributes:
        source: The manifest path.
        line: 1-based line number (0: the whole file).
        field: The offending field, if any.
        kind: A short machine-readable category, e.g. ``wrong_type`` or ``missing_file``.
        message: What is wrong and what was expected.
        path: The media file involved, if any.
    """

    source: str
    line: int
    field: str | None
    kind: str
    message: str
    path: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ManifestError(ValueError):
    """A manifest that cannot be used; ``problems`` lists every problem found (line and field)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = [f"  - {p}" for p in problems[:MAX_REPORTED]]
        more = len(problems) - MAX_REPORTED
        if more > 0:
            shown.append(f"  ... and {more} more (run `omnifuse data check` for all of them)")
        super().__init__("\n".join([f"{len(problems)} manifest problem(s):", *shown]))


@dataclass(frozen=True)
class Record:
    """One validated manifest row.

    Attributes:
        id: The sample id (unique within its manifest).
        line: 1-based line number in the manifest.
        data: The raw JSON object.
        root: The manifest's directory; media paths are relative to it.
    """

    id: str
    line: int
    data: dict[str, Any] = field(repr=False)
    root: Path = field(repr=False)

    def media(self, modality: str) -> Path | None:
        """Absolute-ish path of the ``image``/``audio``/``video`` input, or None if absent."""
        value = self.data.get(modality)
        return None if value is None else self.root / value

    @property
    def targets(self) -> dict[str, Any]:
        """Every non-input field except ``id`` (``None`` values dropped)."""
        skip = {"id", *INPUT_FIELDS}
        return {k: v for k, v in self.data.items() if k not in skip and v is not None}


def field_type(name: str, types: Mapping[str, str] | None = None) -> str | None:
    """The declared type of field ``name``: the card's if given, else its conventional type."""
    if types is not None and name in types:
        return types[name]
    return CONVENTIONAL_TYPES.get(name)


def check_value(name: str, value: Any, kind: str, classes: Iterable[str] = ()) -> tuple[str, str]:
    """Validate one non-null field value against its type.

    Returns:
        ``(problem_kind, message)``; both empty when the value is fine.
    """
    if kind in ("text", "string", "class"):
        if not isinstance(value, str):
            return "wrong_type", f"must be a string, got {_describe(value)}"
        if not value.strip():
            return "empty_text", "is empty"
        allowed = list(classes)
        if kind == "class" and allowed and value not in allowed:
            return "unknown_label", f"{value!r} is not a card class; valid: {_listing(allowed)}"
        return "", ""
    if kind in MEDIA_FIELDS:
        return _check_media_path(value)
    if kind == "strings":
        return _check_strings(value)
    if kind == "messages":
        return check_messages(value)
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        return "wrong_type", f"must be an integer, got {_describe(value)}"
    if kind == "float" and (not isinstance(value, int | float) or isinstance(value, bool)):
        return "wrong_type", f"must be a number, got {_describe(value)}"
    return "", ""


def _check_media_path(value: Any) -> tuple[str, str]:
    if not isinstance(value, str) or not value:
        return "wrong_type", f"must be a non-empty path string, got {_describe(value)}"
    if PurePosixPath(value).is_absolute() or Path(value).is_absolute():
        return "bad_path", f"{value!r} must be relative to the manifest's directory"
    return "", ""


def _check_strings(value: Any) -> tuple[str, str]:
    if not isinstance(value, list) or not value:
        return "wrong_type", f"must be a non-empty list of strings, got {_describe(value)}"
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return "wrong_type", f"item {i} must be a string, got {_describe(item)}"
        if not item.strip():
            return "empty_text", f"item {i} is empty"
    return "", ""


def check_messages(value: Any) -> tuple[str, str]:
    """A conversation: a non-empty list of ``{role, content}`` objects (roles ``system``,
    ``user``, ``assistant``; string contents) with at least one assistant turn."""
    if not isinstance(value, list) or not value:
        return "wrong_type", f"must be a non-empty list of messages, got {_describe(value)}"
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"role", "content"} or "role" not in item:
            return "wrong_type", f"message {i} must be an object with role and content"
        if item["role"] not in MESSAGE_ROLES:
            valid = ", ".join(MESSAGE_ROLES)
            return "bad_role", f"message {i} has role {item['role']!r}; valid: {valid}"
        if not isinstance(item.get("content"), str):
            return "wrong_type", f"message {i} content must be a string"
    if not any(item["role"] == "assistant" for item in value):
        return "no_answer", "has no assistant message (nothing to train on)"
    return "", ""


def _describe(value: Any) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _listing(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def validate_row(
    obj: Any,
    types: Mapping[str, str] | None = None,
    classes: Mapping[str, list[str]] | None = None,
) -> list[tuple[str | None, str, str]]:
    """Problems of one decoded manifest line as ``(field, kind, message)`` tuples."""
    if not isinstance(obj, dict):
        return [(None, "not_object", f"line must be a JSON object, got {type(obj).__name__}")]
    problems: list[tuple[str | None, str, str]] = []
    sample_id = obj.get("id")
    if sample_id is not None and (not isinstance(sample_id, str) or not sample_id):
        problems.append(
            ("id", "wrong_type", f"must be a non-empty string, got {_describe(sample_id)}")
        )
    for name, value in obj.items():
        kind = field_type(name, types)
        if name == "id" or value is None or kind is None:
            continue
        found, message = check_value(name, value, kind, (classes or {}).get(name, ()))
        if found:
            problems.append((name, found, message))
    return problems


def stable_id(line: int, obj: Mapping[str, Any]) -> str:
    """The id of a row without one: ``L<line>-<8 hex>``, the hex from the row's content.

    Stable as long as the row and its line do not change, so ``data check``, ``train`` and
    ``eval`` all name the sample alike; an explicit ``id`` always wins.
    """
    canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return f"L{line}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def outside_root(root: Path, value: str) -> bool:
    """Whether media path ``value`` (relative to ``root``) resolves outside ``root``.

    Symlinks are followed, so a link inside the dataset that points elsewhere counts as
    outside; ``..`` segments that stay inside do not.
    """
    base = root.resolve()
    return not (base / value).resolve().is_relative_to(base)


def root_problems(record: Record, source: str) -> list[Problem]:
    """An ``outside_root`` problem per media path of ``record`` that leaves its directory."""
    return [
        Problem(
            source,
            record.line,
            name,
            "outside_root",
            f"{record.data[name]!r} resolves outside the manifest's directory {record.root}; "
            "set data.allow_outside_root: true (data check: --allow-outside-root) if you trust "
            "this dataset",
            str(record.root / record.data[name]),
        )
        for name in MEDIA_FIELDS
        if isinstance(record.data.get(name), str) and outside_root(record.root, record.data[name])
    ]


def empty_problem(source: str) -> Problem:
    """The problem of a manifest without a single row (blank lines do not count)."""
    return Problem(source, 0, None, "empty_manifest", "holds no rows (empty or only blank lines)")


def iter_manifest(
    path: Path,
    types: Mapping[str, str] | None = None,
    classes: Mapping[str, list[str]] | None = None,
) -> Iterator[Record | Problem]:
    """Stream a manifest: a :class:`Record` per valid line, :class:`Problem` s for the others.

    Blank lines and a UTF-8 byte-order mark are skipped; rows without an ``id`` get
    :func:`stable_id`; duplicate ids are reported on their second occurrence.
    """
    source, root = str(path), path.parent
    seen: dict[str, int] = {}
    for number, raw in _lines(path):
        if isinstance(raw, Problem):
            yield raw
            continue
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            yield Problem(source, number, None, "invalid_json", f"invalid JSON: {err.msg}")
            continue
        found = validate_row(obj, types, classes)
        for name, kind, message in found:
            yield Problem(source, number, name, kind, message)
        if found:
            continue
        sample_id = obj["id"] if obj.get("id") is not None else stable_id(number, obj)
        first = seen.setdefault(sample_id, number)
        if first != number:
            message = f"duplicate id {sample_id!r} (first on line {first})"
            yield Problem(source, number, "id", "duplicate_id", message)
            continue
        yield Record(sample_id, number, obj, root)


def _lines(path: Path) -> Iterator[tuple[int, str | Problem]]:
    """``(number, text)`` per line; a line that is not UTF-8 gives a ``not_utf8`` Problem."""
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            if number == 1:
                data = data.removeprefix(b"\xef\xbb\xbf")
            try:
                yield number, data.decode("utf-8")
            except UnicodeDecodeError as err:
                message = f"not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})"
                yield number, Problem(str(path), number, None, "not_utf8", message)


def read_manifest(
    path: Path,
    types: Mapping[str, str] | None = None,
    classes: Mapping[str, list[str]] | None = None,
) -> list[Record]:
    """Read and validate a whole manifest.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ManifestError: listing every invalid line (line number and field).
    """
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    records: list[Record] = []
    problems: list[Problem] = []
    for item in iter_manifest(path, types, classes):
        if isinstance(item, Record):
            records.append(item)
        else:
            problems.append(item)
    if problems:
        raise ManifestError(problems)
    return records


def write_manifest(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows as JSONL (one compact object per line, UTF-8); return how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
