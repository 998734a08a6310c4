"""Where raw samples come from: a local JSONL manifest or a shard directory.

Both expose the same thing: an ordered list of *units* with known sizes (a manifest's units are
its single samples, a shard set's units are its tar files) and a way to stream the raw samples
of one unit. The streaming dataset plans epochs over units, so local manifests and shards go
through the same shuffling, worker/rank splitting, processors and collate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnifuse.data.card import DatasetCard, find_card
from omnifuse.data.manifest import (
    MEDIA_FIELDS,
    ManifestError,
    Record,
    empty_problem,
    read_manifest,
    root_problems,
)
from omnifuse.data.shards import find_index, iter_shard, read_index

Media = Path | tuple[bytes, str]
"""A media file on disk, or ``(bytes, extension)`` read from a shard."""


@dataclass(frozen=True)
class RawSample:
    """One sample before processing.

    Attributes:
        id: The sample id.
        fields: The manifest row without media fields (``text`` and targets).
        media: Modality -> file path or shard bytes.
        source: Where it came from, for errors: ``manifest:line`` or ``shard:key``.
    """

    id: str
    fields: dict[str, Any]
    media: dict[str, Media]
    source: str


class Source(ABC):
    """An ordered collection of units (groups of samples read together)."""

    path: Path
    per_sample: bool
    """True when every unit is one sample (units can then be shuffled and split freely)."""

    @property
    @abstractmethod
    def unit_sizes(self) -> list[int]:
        """Samples per unit, in unit order."""

    @abstractmethod
    def unit(self, index: int) -> Iterator[RawSample]:
        """Stream the raw samples of one unit."""

    def __len__(self) -> int:
        return sum(self.unit_sizes)


def _from_record(record: Record, source: str) -> RawSample:
    fields = {k: v for k, v in record.data.items() if k not in MEDIA_FIELDS and k != "id"}
    media: dict[str, Media] = {}
    for modality in MEDIA_FIELDS:
        path = record.media(modality)
        if path is not None:
            media[modality] = path
    return RawSample(record.id, fields, media, f"{source}:{record.line}")


class ManifestSource(Source):
    """A JSONL manifest read (and validated) up front; media are opened from disk.

    Media paths that resolve outside the manifest's directory (``..``, symlinks) are refused
    unless ``allow_outside_root`` (``data.allow_outside_root``).
    """

    per_sample = True

    def __init__(
        self, path: Path, card: DatasetCard | None = None, allow_outside_root: bool = False
    ) -> None:
        self.path = path
        types = card.types() if card is not None else None
        self.records = read_manifest(path, types)
        if not self.records:
            raise ManifestError([empty_problem(str(path))])
        if not allow_outside_root:
            problems = [p for r in self.records for p in root_problems(r, str(path))]
            if problems:
                raise ManifestError(problems)

    @property
    def unit_sizes(self) -> list[int]:
        return [1] * len(self.records)

    def unit(self, index: int) -> Iterator[RawSample]:
        yield _from_record(self.records[index], str(self.path))


class ShardSource(Source):
    """A shard directory; a unit is one tar file, streamed sequentially."""

    per_sample = False

    def __init__(self, path: Path) -> None:
        index_path = find_index(path)
        if index_path is None:
            raise FileNotFoundError(f"no shard index at {path}")
        self.path = index_path.parent
        self.index = read_index(index_path)

    @property
    def unit_sizes(self) -> list[int]:
        return [shard.num_samples for shard in self.index.shards]

    def unit(self, index: int) -> Iterator[RawSample]:
        for sample in iter_shard(self.path / self.index.shards[index].file):
            row = sample.record
            fields = {k: v for k, v in row.items() if k not in MEDIA_FIELDS and k != "id"}
            media: dict[str, Media] = dict(sample.media)
            yield RawSample(str(row.get("id", sample.key)), fields, media, sample.source)


def open_source(
    path: Path, card: DatasetCard | None = None, allow_outside_root: bool = False
) -> Source:
    """A :class:`ManifestSource` for a ``.jsonl`` file, a :class:`ShardSource` for a shard dir
    (or its index file).

    Raises:
        FileNotFoundError: nothing usable at ``path`` (says what is expected).
    """
    if path.is_file() and path.suffix == ".jsonl":
        return ManifestSource(path, card, allow_outside_root)
    if find_index(path) is not None:
        return ShardSource(path)
    raise FileNotFoundError(
        f"{path}: expected a JSONL manifest (*.jsonl) or a shard directory with index.json "
        "(written by `omnifuse data shard`)"
    )


def source_card(path: Path) -> Path | None:
    """The card that belongs to a manifest or shard dir, if there is one."""
    index = find_index(path)
    return find_card(index.parent if index is not None else path)
