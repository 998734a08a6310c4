"""WebDataset tar shards: ``omnifuse data shard MANIFEST --out DIR --shard-size N``.

Layout of ``DIR``::

    shard-000000.tar   # samples 0..N-1
    shard-000001.tar
    index.json         # shard files, sample counts, sha256; what the loader plans with
    card.yaml          # the dataset card (copied, or inferred from the manifest)

Inside a shard every sample is a group of members sharing one key (WebDataset convention: the
key is the file name up to its first dot): ``<key>.json`` holds the manifest row unchanged and
``<key>.<modality><ext>`` (e.g. ``000000017.image.png``) holds the media file's bytes unchanged.
Tar headers carry no timestamps or owners, so the same manifest always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnifuse.data.card import CARD_NAME, DatasetCard, SplitSpec, find_card, infer_fields, read_card
from omnifuse.data.card import write_card as _write_card
from omnifuse.data.manifest import (
    MEDIA_FIELDS,
    ManifestError,
    Problem,
    Record,
    read_manifest,
    root_problems,
)

INDEX_NAME = "index.json"
SHARD_NAME = "shard-{:06d}.tar"
INDEX_FORMAT = "omnifuse-shards"
INDEX_VERSION = 1


@dataclass(frozen=True)
class ShardInfo:
    """One shard file of a shard set."""

    file: str
    num_samples: int
    sha256: str


@dataclass(frozen=True)
class ShardIndex:
    """The ``index.json`` of a shard directory.

    Attributes:
        split: Name of the split (the manifest's stem).
        source: The manifest the shards were written from.
        num_samples: Samples over all shards.
        shards: The shard files in order.
        modalities: Media modalities present in at least one sample.
    """

    split: str
    source: str
    num_samples: int
    shards: list[ShardInfo] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = {"format": INDEX_FORMAT, "version": INDEX_VERSION, **asdict(self)}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> ShardIndex:
        """Parse an index; errors name the file and what is wrong."""
        try:
            data = json.loads(text)
            if data.get("format") != INDEX_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {INDEX_FORMAT!r}")
            shards = [ShardInfo(**s) for s in data["shards"]]
            return cls(
                data["split"],
                data["source"],
                int(data["num_samples"]),
                shards,
                list(data.get("modalities", [])),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{source}: not a valid shard index ({err})") from None


@dataclass(frozen=True)
class ShardSample:
    """One sample read back from a shard.

    Attributes:
        key: The sample's key inside the tar.
        record: The manifest row, unchanged.
        media: Modality -> ``(file bytes, extension with dot)``.
        source: ``<shard path>:<key>`` for error messages.
    """

    key: str
    record: dict[str, Any]
    media: dict[str, tuple[bytes, str]]
    source: str


def find_index(path: Path) -> Path | None:
    """``path`` if it is an index file, ``path/index.json`` for a shard dir; else None."""
    if path.is_file() and path.name.endswith(".json"):
        return path
    candidate = path / INDEX_NAME
    return candidate if path.is_dir() and candidate.is_file() else None


def read_index(path: Path) -> ShardIndex:
    """Read the index of a shard directory (or the index file itself).

    Raises:
        FileNotFoundError: no index there.
        ValueError: a malformed index.
    """
    index = find_index(path)
    if index is None:
        raise FileNotFoundError(f"no shard index ({INDEX_NAME}) at {path}")
    return ShardIndex.from_json(index.read_text(encoding="utf-8"), str(index))


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    """Add a member with fixed metadata so shards are byte-for-byte reproducible."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(payload))


def _write_sample(tar: tarfile.TarFile, key: str, record: Record) -> list[str]:
    """Write one sample's members; return its media modalities."""
    row = json.dumps(record.data, ensure_ascii=False, sort_keys=True).encode("utf-8")
    _add(tar, f"{key}.json", row)
    present: list[str] = []
    for modality in MEDIA_FIELDS:
        path = record.media(modality)
        if path is not None:
            _add(tar, f"{key}.{modality}{path.suffix.lower()}", path.read_bytes())
            present.append(modality)
    return present


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _missing_media(manifest: Path, records: list[Record]) -> list[Problem]:
    problems: list[Problem] = []
    for record in records:
        for modality in MEDIA_FIELDS:
            path = record.media(modality)
            if path is not None and not path.is_file():
                problems.append(
                    Problem(
                        str(manifest),
                        record.line,
                        modality,
                        "missing_file",
                        f"{record.data[modality]}: file not found",
                        str(path),
                    )
                )
    return problems


def write_shards(
    manifest: Path,
    out: Path,
    shard_size: int,
    card: DatasetCard | None = None,
    on_sample: Callable[[], None] | None = None,
    allow_outside_root: bool = False,
) -> ShardIndex:
    """Pack a manifest and its media into tar shards of ``shard_size`` samples, plus the index
    and a card.

    Args:
        manifest: The JSONL manifest.
        out: Output directory (created).
        shard_size: Samples per shard (the last shard may hold fewer).
        card: Field types/classes; default: ``card.yaml`` beside the manifest, else inferred.
        on_sample: Called after each sample (progress display).
        allow_outside_root: Pack media paths that resolve outside the manifest's directory.

    Raises:
        ValueError: ``shard_size`` < 1.
        ManifestError: invalid rows or missing media files (with line numbers).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size={shard_size} must be at least 1")
    if card is None and (found := find_card(manifest)) is not None:
        card = read_card(found)
    records = read_manifest(
        manifest, card.types() if card else None, card.classes() if card else None
    )
    outside = [p for r in records for p in root_problems(r, str(manifest))]
    if outside and not allow_outside_root:
        raise ManifestError(outside)
    if missing := _missing_media(manifest, records):
        raise ManifestError(missing)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[ShardInfo] = []
    modalities: set[str] = set()
    for first in range(0, len(records), shard_size):
        chunk = records[first : first + shard_size]
        path = out / SHARD_NAME.format(len(shards))
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for offset, record in enumerate(chunk):
                modalities.update(_write_sample(tar, f"{first + offset:09d}", record))
                if on_sample is not None:
                    on_sample()
        shards.append(ShardInfo(path.name, len(chunk), _sha256(path)))
    index = ShardIndex(manifest.stem, str(manifest), len(records), shards, sorted(modalities))
    (out / INDEX_NAME).write_text(index.to_json(), encoding="utf-8")
    _write_shard_card(card, records, index, out)
    return index


def _write_shard_card(
    card: DatasetCard | None, records: list[Record], index: ShardIndex, out: Path
) -> None:
    """The card of the shard dir: the source card's fields, with one split that names the index."""
    if card is None:
        card = DatasetCard(name=index.split, fields=infer_fields(records))
    split = SplitSpec(manifest=Path(index.source).name, size=index.num_samples, shards=INDEX_NAME)
    _write_card(card.model_copy(update={"splits": {index.split: split}}), out / CARD_NAME)


def iter_shard(path: Path) -> Iterator[ShardSample]:
    """Stream the samples of one shard in stored order (members of a key are consecutive).

    Raises:
        ValueError: a corrupt tar or a sample without its ``.json`` member (names the shard).
    """
    key: str | None = None
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                this_key, _, suffix = name.partition(".")
                if key is not None and this_key != key:
                    yield _sample(path, key, members)
                    members = {}
                key = this_key
                handle = tar.extractfile(member)
                members[suffix] = handle.read() if handle is not None else b""
    except tarfile.TarError as err:
        raise ValueError(f"{path}: corrupt shard ({err})") from None
    if key is not None:
        yield _sample(path, key, members)


def _sample(path: Path, key: str, members: dict[str, bytes]) -> ShardSample:
    source = f"{path}:{key}"
    if "json" not in members:
        raise ValueError(f"{source}: sample has no .json member (members: {sorted(members)})")
    record = json.loads(members.pop("json").decode("utf-8"))
    media: dict[str, tuple[bytes, str]] = {}
    for suffix, payload in members.items():
        modality, _, ext = suffix.partition(".")
        if modality in MEDIA_FIELDS:
            media[modality] = (payload, f".{ext}" if ext else "")
    return ShardSample(key, record, media, source)


def verify_shards(path: Path) -> list[str]:
    """Compare every shard with the index (existence, sha256); return the mismatches."""
    index = read_index(path)
    root = (find_index(path) or path).parent
    problems: list[str] = []
    for shard in index.shards:
        file = root / shard.file
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif _sha256(file) != shard.sha256:
            problems.append(f"{file}: sha256 differs from {INDEX_NAME} (corrupt or rewritten)")
    return problems
