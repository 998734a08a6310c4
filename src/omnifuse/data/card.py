"""Dataset cards (``card.yaml``): what a dataset is, its splits, and the type of every field.

The card is the source of truth for field types and class lists: class names map to indices in
the order the card lists them. Unknown keys are kept (cards may be extended).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from omnifuse.config.loader import explain
from omnifuse.data.manifest import (
    CONVENTIONAL_TYPES,
    INPUT_FIELDS,
    Problem,
    Record,
    iter_manifest,
    read_manifest,
)

CARD_NAME = "card.yaml"
FieldType = Literal[
    "text", "image", "audio", "video", "class", "string", "strings", "int", "float", "messages"
]


class _Open(BaseModel):
    """Validated known keys; extra keys are kept so cards can be extended."""

    model_config = ConfigDict(extra="allow")


class FieldSpec(_Open):
    """One manifest field: its type, a description and (for ``class``) the class names."""

    type: FieldType
    description: str = ""
    classes: list[str] | None = None

    @model_validator(mode="after")
    def _classes_fit(self) -> FieldSpec:
        if self.classes is not None:
            if self.type != "class":
                raise ValueError(f"classes are only allowed for type 'class', not {self.type!r}")
            duplicates = sorted({c for c in self.classes if self.classes.count(c) > 1})
            if duplicates:
                raise ValueError(f"classes must be unique; repeated: {', '.join(duplicates)}")
        return self


class SplitSpec(_Open):
    """One split: its manifest file (relative to the card) and number of samples."""

    manifest: str
    size: int = Field(ge=0)


class GeneratorSpec(_Open):
    """What produced the dataset (a built-in generator or an importer) and with which seed."""

    name: str
    seed: int | None = None
    version: str | None = None


class DatasetCard(_Open):
    """The ``card.yaml`` of a dataset directory."""

    name: str
    description: str = ""
    license: str = "unknown"
    source: str = ""
    splits: dict[str, SplitSpec] = Field(default_factory=dict)
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    generator: GeneratorSpec | None = None

    def types(self) -> dict[str, str]:
        """Field name -> declared type."""
        return {name: spec.type for name, spec in self.fields.items()}

    def classes(self) -> dict[str, list[str]]:
        """Class field name -> its class names (only fields that list them)."""
        return {n: list(s.classes) for n, s in self.fields.items() if s.classes is not None}

    def targets(self) -> list[str]:
        """Declared non-input fields, in card order."""
        return [name for name in self.fields if name not in INPUT_FIELDS and name != "id"]

    def inputs(self) -> list[str]:
        """Declared modality inputs, sorted."""
        return sorted(name for name in self.fields if name in INPUT_FIELDS)


class CardError(ValueError):
    """An unreadable or invalid card; the message names the file and each bad field."""


def read_card(path: Path) -> DatasetCard:
    """Parse and validate ``card.yaml``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CardError: YAML syntax errors or invalid fields (named by their path, e.g.
            ``fields.label.type``).
    """
    if not path.is_file():
        raise FileNotFoundError(f"dataset card not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CardError(f"{path}: YAML syntax error: {err}") from None
    if not isinstance(data, dict):
        raise CardError(f"{path}: a card must be a mapping, got {type(data).__name__}")
    try:
        return DatasetCard.model_validate(data)
    except ValidationError as err:
        lines = "\n".join(f"  - {line}" for line in explain(err, data, DatasetCard))
        raise CardError(f"{path}: invalid dataset card:\n{lines}") from None


def write_card(card: DatasetCard, path: Path) -> Path:
    """Write ``card`` as YAML (keys in declaration order, unset optional keys omitted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = card.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def find_card(manifest: Path) -> Path | None:
    """The ``card.yaml`` in the manifest's directory (or in ``manifest`` if it is a directory)."""
    folder = manifest if manifest.is_dir() else manifest.parent
    candidate = folder / CARD_NAME
    return candidate if candidate.is_file() else None


def infer_type(values: Iterable[Any]) -> str | None:
    """A field type that fits every (non-null) value, or None if none does."""
    kinds = {_value_kind(v) for v in values if v is not None}
    if kinds == {"int"}:
        return "int"
    if kinds and kinds <= {"int", "float"}:
        return "float"
    return kinds.pop() if len(kinds) == 1 and None not in kinds else None


def _value_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "strings"
    if isinstance(value, list) and all(isinstance(v, dict) and "role" in v for v in value):
        return "messages"
    return None


def infer_fields(
    records: Iterable[Record], class_fields: Iterable[str] = ()
) -> dict[str, FieldSpec]:
    """Field specs from the values in ``records``.

    Conventional names keep their types (``label`` is a class); ``class_fields`` are also made
    classes. Class lists are the sorted set of values seen.
    """
    values: dict[str, list[Any]] = {}
    for record in records:
        for name, value in record.data.items():
            if name != "id":
                values.setdefault(name, []).append(value)
    wanted = set(class_fields)
    specs: dict[str, FieldSpec] = {}
    for name in sorted(values):
        kind = (
            "class" if name in wanted else CONVENTIONAL_TYPES.get(name) or infer_type(values[name])
        )
        if kind is None:
            continue
        classes = (
            sorted({str(v) for v in values[name] if v is not None}) if kind == "class" else None
        )
        specs[name] = FieldSpec.model_validate({"type": kind, "classes": classes})
    return specs


def card_for_manifests(
    manifests: Mapping[str, Path],
    name: str,
    class_fields: Iterable[str] = (),
    **info: Any,
) -> DatasetCard:
    """A card describing ``manifests`` (split name -> JSONL path), with inferred field types.

    Args:
        manifests: Split name -> manifest path; paths are stored relative to the first one's dir.
        name: Dataset name.
        class_fields: Fields to treat as classes (besides ``label``).
        **info: Other card keys (description, license, source, generator ...).

    Raises:
        ManifestError: when a manifest has invalid lines.
    """
    records = {split: read_manifest(path) for split, path in manifests.items()}
    root = next(iter(manifests.values())).parent if manifests else Path(".")
    splits = {
        split: SplitSpec(manifest=_relative(path, root), size=len(records[split]))
        for split, path in manifests.items()
    }
    every = [r for rows in records.values() for r in rows]
    return DatasetCard(name=name, splits=splits, fields=infer_fields(every, class_fields), **info)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def validate_card(card: DatasetCard, root: Path, card_path: str = CARD_NAME) -> list[Problem]:
    """Cross-check a card with its dataset directory: manifests exist, sizes and fields match.

    Returns:
        Problems (``line`` 0 for card-level ones), empty when consistent. Row-level problems of
        the manifests are included with their line numbers.
    """
    problems: list[Problem] = []
    for split, spec in card.splits.items():
        manifest = root / spec.manifest
        if not manifest.is_file():
            problems.append(
                Problem(
                    card_path,
                    0,
                    f"splits.{split}.manifest",
                    "missing_file",
                    f"manifest {spec.manifest!r} not found in {root}",
                    str(manifest),
                )
            )
            continue
        problems.extend(_check_split(card, split, spec, manifest, card_path))
    return problems


def _check_split(
    card: DatasetCard, split: str, spec: SplitSpec, manifest: Path, card_path: str
) -> list[Problem]:
    problems: list[Problem] = []
    count = 0
    undeclared: set[str] = set()
    for item in iter_manifest(manifest, card.types(), card.classes()):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        count += 1
        undeclared.update(k for k in item.data if k != "id" and k not in card.fields)
    if count != spec.size and not problems:
        problems.append(
            Problem(
                card_path,
                0,
                f"splits.{split}.size",
                "size_mismatch",
                f"card says {spec.size} samples but {spec.manifest} has {count}",
            )
        )
    for name in sorted(undeclared):
        problems.append(
            Problem(
                card_path,
                0,
                f"fields.{name}",
                "undeclared_field",
                f"{spec.manifest} uses field {name!r} that the card does not declare",
            )
        )
    return problems
