"""Importers: common on-disk layouts -> omnifuse manifests + ``card.yaml``.

Formats: ``coco`` (captions JSON + image folder), ``imagefolder`` (one folder per class),
``librispeech`` (``*.trans.txt`` + audio), ``audio-csv`` (``path,transcript``) and ``video-csv``
(``path,label``). Splits are deterministic: groups (speakers, or single samples) are ordered by a
seeded hash and the first ``val_fraction``/``test_fraction`` of each stratum (class) go to
val/test, so the same source and seed always give the same split and adding samples moves few.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from omnifuse.data.card import (
    CARD_NAME,
    DatasetCard,
    FieldSpec,
    GeneratorSpec,
    SplitSpec,
    write_card,
)
from omnifuse.data.manifest import write_manifest

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")
FORMATS = ("coco", "imagefolder", "librispeech", "audio-csv", "video-csv", "conversations")
MAX_LISTED = 5


class DatasetImportError(ValueError):
    """The source data is malformed (missing files, bad CSV/JSON); names the file and row."""


@dataclass(frozen=True)
class ImportOptions:
    """How an import writes its output.

    Attributes:
        val_fraction: Share of groups per stratum that go to ``val.jsonl``.
        test_fraction: Share that go to ``test.jsonl``.
        seed: Seeds the split hash.
        copy_media: Copy media under the output directory (default: reference the source files
            with paths relative to the output directory).
        name: Dataset name in the card (default: the output directory's name).
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.0
    seed: int = 0
    copy_media: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        for label, value in (
            ("val_fraction", self.val_fraction),
            ("test_fraction", self.test_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{label}={value} must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} "
                "must be < 1 so that some samples are left for training"
            )


@dataclass
class ImportSummary:
    """What an import wrote: the card path, samples per split and what was left out (and why)."""

    card: Path
    splits: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class _Sample:
    """One row to write, with its split group and stratum."""

    row: dict[str, Any]
    group: str
    stratum: str = ""


def assign_splits(
    samples: Sequence[_Sample], val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Split name per sample: groups never straddle splits; each stratum is split on its own."""
    strata: dict[str, set[str]] = {}
    for sample in samples:
        strata.setdefault(sample.stratum, set()).add(sample.group)
    split_of: dict[tuple[str, str], str] = {}
    for stratum, groups in strata.items():
        ordered = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        n_val = round(len(ordered) * val_fraction)
        n_test = round(len(ordered) * test_fraction)
        for i, group in enumerate(ordered):
            split = "val" if i < n_val else "test" if i < n_val + n_test else "train"
            split_of[(stratum, group)] = split
    return [split_of[(s.stratum, s.group)] for s in samples]


def _version() -> str:
    try:
        return metadata.version("omnifuse")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def write_dataset(
    out: Path,
    samples: Sequence[_Sample],
    fields: dict[str, FieldSpec],
    fmt: str,
    source: str,
    options: ImportOptions,
    skipped: dict[str, int],
) -> ImportSummary:
    """Write ``train/val/test.jsonl`` (empty splits omitted) and ``card.yaml`` under ``out``."""
    if not samples:
        raise DatasetImportError(f"{source}: no samples found to import")
    splits = assign_splits(samples, options.val_fraction, options.test_fraction, options.seed)
    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for split in ("train", "val", "test"):
        rows = [s.row for s, name in zip(samples, splits, strict=True) if name == split]
        if rows:
            sizes[split] = write_manifest(out / f"{split}.jsonl", rows)
    card = DatasetCard(
        name=options.name or out.resolve().name,
        description=f"Imported from {fmt} data at {source}.",
        source=source,
        splits={k: SplitSpec(manifest=f"{k}.jsonl", size=v) for k, v in sizes.items()},
        fields=fields,
        generator=GeneratorSpec(
            name=f"omnifuse.import.{fmt}", seed=options.seed, version=_version()
        ),
    )
    return ImportSummary(write_card(card, out / CARD_NAME), sizes, skipped)


def _media_ref(src: Path, out: Path, dest: str, options: ImportOptions) -> str:
    """The manifest path of ``src``: copied to ``out/dest`` or referenced relative to ``out``."""
    if options.copy_media:
        target = out / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        return dest
    return Path(os.path.relpath(src.resolve(), out.resolve())).as_posix()


def _require_files(paths: Sequence[Path], source: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DatasetImportError(
            f"{source}: {len(missing)} media file(s) not found: {listed}{more}"
        )


# --- COCO captions ---------------------------------------------------------------------------


def _read_coco(path: Path) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Image id -> file name and image id -> captions (in annotation order)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {int(img["id"]): str(img["file_name"]) for img in data["images"]}
        captions: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            captions.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
    except json.JSONDecodeError as err:
        raise DatasetImportError(f"{path}: invalid JSON: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetImportError(
            f"{path}: not a COCO captions file (needs images[].id/file_name and "
            f"annotations[].image_id/caption): {err!r}"
        ) from None
    return files, captions


def import_coco(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """COCO-style captions JSON (+ the folder its ``file_name`` s are relative to).

    Each image becomes one sample ``{id, image, caption, captions}`` (``caption`` is the first
    reference). Images without any caption are left out and counted in ``skipped``.
    """
    options = options or ImportOptions()
    root = media_root or src.parent
    files, captions = _read_coco(src)
    ids = sorted(files)
    kept = [i for i in ids if captions.get(i)]
    _require_files([root / files[i] for i in kept], str(src))
    samples = [
        _Sample(
            {
                "id": str(i),
                "image": _media_ref(root / files[i], out, f"images/{files[i]}", options),
                "caption": captions[i][0],
                "captions": captions[i],
            },
            group=str(i),
        )
        for i in kept
    ]
    fields = {
        "image": FieldSpec(type="image", description="The photo."),
        "caption": FieldSpec(type="string", description="First reference caption."),
        "captions": FieldSpec(type="strings", description="All reference captions."),
    }
    skipped = {"images without captions": len(ids) - len(kept)} if len(kept) < len(ids) else {}
    return write_dataset(out, samples, fields, "coco", str(src), options, skipped)


# --- image folder ----------------------------------------------------------------------------


def import_imagefolder(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """``SRC/<class>/**/<image>``: one folder per class; ``label`` is the folder name.

    Splits are stratified by class. Files that are not images (by suffix) are counted in
    ``skipped``.
    """
    del media_root  # the class folders are the media root
    options = options or ImportOptions()
    if not src.is_dir():
        raise DatasetImportError(f"{src}: not a directory of class folders")
    classes = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetImportError(f"{src}: no class folders found (expected SRC/<class>/<image>)")
    samples: list[_Sample] = []
    other = 0
    for label in classes:
        for path in sorted(p for p in (src / label).rglob("*") if p.is_file()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                other += 1
                continue
            rel = path.relative_to(src).as_posix()
            row = {
                "id": rel.rsplit(".", 1)[0],
                "image": _media_ref(path, out, f"images/{rel}", options),
                "label": label,
            }
            samples.append(_Sample(row, group=row["id"], stratum=label))
    fields = {
        "image": FieldSpec(type="image", description="The image."),
        "label": FieldSpec(type="class", description="Folder name.", classes=classes),
    }
    skipped = {"non-image files": other} if other else {}
    return write_dataset(out, samples, fields, "imagefolder", str(src), options, skipped)


# --- LibriSpeech -----------------------------------------------------------------------------


def _audio_for(folder: Path, utt: str) -> Path:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{utt}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{utt}.flac"


def _read_transcripts(trans: Path) -> list[tuple[str, str, int]]:
    """``(utterance id, transcript, line number)`` of one ``*.trans.txt`` file."""
    rows: list[tuple[str, str, int]] = []
    for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        if not text.strip():
            raise DatasetImportError(f"{trans}:{number}: expected 'UTTERANCE-ID TRANSCRIPT'")
        rows.append((utt, text.strip(), number))
    return rows


def import_librispeech(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """LibriSpeech layout: ``*.trans.txt`` files listing ``UTT-ID TRANSCRIPT`` per line, next to
    ``UTT-ID.flac`` (or .wav/.ogg/.mp3). Samples are ``{id, audio, transcript, speaker,
    chapter}``; splits are by speaker so no voice appears in two splits."""
    del media_root
    options = options or ImportOptions()
    transcripts = sorted(src.rglob("*.trans.txt"))
    if not transcripts:
        raise DatasetImportError(f"{src}: no *.trans.txt files found (LibriSpeech layout)")
    samples: list[_Sample] = []
    for trans in transcripts:
        for utt, text, _ in _read_transcripts(trans):
            audio = _audio_for(trans.parent, utt)
            _require_files([audio], f"{trans}")
            speaker, _, rest = utt.partition("-")
            row = {
                "id": utt,
                "audio": _media_ref(
                    audio, out, f"audio/{audio.relative_to(src).as_posix()}", options
                ),
                "transcript": text,
                "speaker": speaker,
                "chapter": rest.partition("-")[0],
            }
            samples.append(_Sample(row, group=speaker))
    fields = {
        "audio": FieldSpec(type="audio", description="The utterance."),
        "transcript": FieldSpec(type="string", description="What is said."),
        "speaker": FieldSpec(type="string", description="Speaker id (splits are by speaker)."),
        "chapter": FieldSpec(type="string", description="Chapter id."),
    }
    return write_dataset(out, samples, fields, "librispeech", str(src), options, {})


# --- CSV (audio, video) ----------------------------------------------------------------------


def _read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` pairs of a CSV with a header that has the ``required`` columns."""
    if not path.is_file():
        raise DatasetImportError(f"{path}: CSV file not found")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        missing = [c for c in required if c not in columns]
        if missing:
            raise DatasetImportError(
                f"{path}: CSV header has columns {columns}; required: {', '.join(required)} "
                f"(missing {', '.join(missing)})"
            )
        rows = [(reader.line_num, dict(row)) for row in reader]
    for line, row in rows:
        empty = [c for c in required if not (row.get(c) or "").strip()]
        if empty:
            raise DatasetImportError(f"{path}:{line}: empty value in column(s) {', '.join(empty)}")
    return rows


def _csv_samples(
    csv_path: Path, out: Path, modality: str, root: Path, options: ImportOptions, target: str
) -> list[_Sample]:
    rows = _read_csv(csv_path, ["path", target])
    _require_files([root / row["path"] for _, row in rows], str(csv_path))
    samples: list[_Sample] = []
    for _, row in rows:
        rel = row.pop("path").strip()
        record: dict[str, Any] = {"id": (row.pop("id", "") or "").strip() or rel.rsplit(".", 1)[0]}
        record[modality] = _media_ref(root / rel, out, f"{modality}/{rel}", options)
        record.update({k: v.strip() for k, v in row.items() if k and v is not None and v.strip()})
        group = record.get("group") or record.get("speaker") or record["id"]
        stratum = record[target] if target == "label" else ""
        samples.append(_Sample(record, group=str(group), stratum=stratum))
    duplicates = [k for k, n in Counter(s.row["id"] for s in samples).items() if n > 1]
    if duplicates:
        raise DatasetImportError(f"{csv_path}: duplicate ids {duplicates[:MAX_LISTED]}")
    return samples


def _extra_fields(samples: Sequence[_Sample], known: set[str]) -> dict[str, FieldSpec]:
    names = sorted({k for s in samples for k in s.row} - known - {"id"})
    return {n: FieldSpec(type="string", description="Column of the source CSV.") for n in names}


def import_audio_csv(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """A CSV with header ``path,transcript`` (optional ``id``, ``speaker``/``group`` and other
    columns, kept as string fields); paths relative to ``media_root`` (default: the CSV's dir).
    Splits keep each ``speaker`` (or ``group``) in one split."""
    options = options or ImportOptions()
    samples = _csv_samples(src, out, "audio", media_root or src.parent, options, "transcript")
    fields = {
        "audio": FieldSpec(type="audio", description="The clip."),
        "transcript": FieldSpec(type="string", description="What is said."),
        **_extra_fields(samples, {"audio", "transcript"}),
    }
    return write_dataset(out, samples, fields, "audio-csv", str(src), options, {})


def import_video_csv(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """A CSV with header ``path,label`` (optional ``id`` and other columns, kept as string
    fields); paths relative to ``media_root`` (default: the CSV's dir). Splits are stratified by
    label."""
    options = options or ImportOptions()
    samples = _csv_samples(src, out, "video", media_root or src.parent, options, "label")
    classes = sorted({s.row["label"] for s in samples})
    fields = {
        "video": FieldSpec(type="video", description="The clip."),
        "label": FieldSpec(type="class", description="Clip class.", classes=classes),
        **_extra_fields(samples, {"video", "label"}),
    }
    return write_dataset(out, samples, fields, "video-csv", str(src), options, {})


def import_conversations(
    src: Path, out: Path, media_root: Path | None = None, options: ImportOptions | None = None
) -> ImportSummary:
    """Conversation rows (LLaMA-Factory / ms-swift / TRL ``messages`` + ``images``/``audios``/
    ``videos``); see :mod:`omnifuse.data.conversations`."""
    from omnifuse.data.conversations import import_conversations as run

    return run(src, out, media_root, options)


Importer = Callable[[Path, Path, Path | None, ImportOptions | None], ImportSummary]
IMPORTERS: dict[str, Importer] = {
    "coco": import_coco,
    "imagefolder": import_imagefolder,
    "librispeech": import_librispeech,
    "audio-csv": import_audio_csv,
    "video-csv": import_video_csv,
    "conversations": import_conversations,
}


def import_dataset(
    fmt: str,
    src: Path,
    out: Path,
    media_root: Path | None = None,
    options: ImportOptions | None = None,
) -> ImportSummary:
    """Run the importer of ``fmt`` (one of :data:`FORMATS`).

    Raises:
        ValueError: unknown format (lists the valid ones).
        FileNotFoundError: ``src`` does not exist.
        DatasetImportError: malformed source data.
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    if not src.exists():
        raise FileNotFoundError(f"import source not found: {src}")
    return IMPORTERS[fmt](src, out, media_root, options)
