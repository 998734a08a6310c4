"""``omnifuse data check``: validate every row of a manifest and actually open its media.

Images are verified and fully decoded with PIL, audio is read with soundfile (zero-length clips
are errors) and videos must decode a first frame with PyAV. Row problems (JSON, ids, field
types, empty text) come from :mod:`omnifuse.data.manifest`; class values are checked against the
dataset card when there is one.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omnifuse.config.image import ImageProcessorConfig
from omnifuse.config.video import VideoProcessorConfig
from omnifuse.data.card import (
    CARD_NAME,
    CardError,
    DatasetCard,
    find_card,
    read_card,
    validate_card,
)
from omnifuse.data.manifest import (
    MEDIA_FIELDS,
    Problem,
    Record,
    empty_problem,
    iter_manifest,
    root_problems,
    validate_row,
)
from omnifuse.data.shards import ShardSample, find_index, iter_shard, read_index, verify_shards

AUDIO_BLOCK = 1 << 16
"""Frames decoded at a time when checking audio."""

DEFAULT_MAX_PIXELS = ImageProcessorConfig.model_fields["max_pixels"].default
DEFAULT_MAX_RESOLUTION = VideoProcessorConfig.model_fields["max_resolution"].default

MediaSource = Path | bytes
"""A media file on disk, or its bytes (as stored in a shard)."""


def probe_image(source: MediaSource) -> tuple[str, str]:
    """Open an image twice: ``verify()`` (structure) then ``load()`` (truncated pixel data).

    Returns:
        ``(kind, reason)``; empty strings when the image is fine.
    """
    from PIL import Image

    try:
        with Image.open(_opened(source)) as image:
            if image.width * image.height > DEFAULT_MAX_PIXELS:
                return "too_large", (
                    f"image is {image.width}x{image.height}, more than "
                    f"image.processor.max_pixels={DEFAULT_MAX_PIXELS:,} (default); not decoded"
                )
            image.verify()
        with Image.open(_opened(source)) as image:
            image.load()
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ...) for bad data
        return "corrupt_image", f"cannot decode image: {_short(err)}"
    return "", ""


def probe_audio(source: MediaSource) -> tuple[str, str]:
    """Read an audio file with soundfile; zero samples is an error.

    Returns:
        ``(kind, reason)``; empty strings when the clip is fine.
    """
    import numpy as np
    import soundfile as sf

    frames, finite = 0, True
    try:  # in blocks: the whole file is decoded (truncation shows) but never held in memory
        for block in sf.blocks(_opened(source), blocksize=AUDIO_BLOCK, dtype="float32"):
            frames += len(block)
            finite = finite and bool(np.isfinite(block).all())
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError ...
        return "corrupt_audio", f"cannot decode audio: {_short(err)}"
    if frames == 0:
        return "empty_audio", "audio has no samples (zero length)"
    if not finite:
        return "corrupt_audio", "audio contains NaN or infinite samples"
    return "", ""


def probe_video(source: MediaSource) -> tuple[str, str]:
    """Open a video with PyAV and decode its first frame.

    Returns:
        ``(kind, reason)``; empty strings when the video is fine.
    """
    import av

    try:
        with av.open(_opened(source), mode="r") as container:
            if not container.streams.video:
                return "corrupt_video", "no video stream in file"
            context = container.streams.video[0].codec_context
            width, height = getattr(context, "width", 0) or 0, getattr(context, "height", 0) or 0
            if max(width, height) > DEFAULT_MAX_RESOLUTION:
                return "too_large", (
                    f"video frames are {width}x{height}, larger than "
                    f"video.processor.max_resolution={DEFAULT_MAX_RESOLUTION} (default)"
                )
            for _ in container.decode(video=0):
                return "", ""
    except Exception as err:  # PyAV raises FFmpegError subclasses, OSError, ValueError ...
        return "corrupt_video", f"cannot decode video: {_short(err)}"
    return "corrupt_video", "video has no decodable frames"


PROBES: dict[str, Callable[[MediaSource], tuple[str, str]]] = {
    "audio": probe_audio,
    "image": probe_image,
    "video": probe_video,
}


def _opened(source: MediaSource) -> str | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)


def _short(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def probe_media(modality: str, path: Path) -> tuple[str, str]:
    """Check that ``path`` exists and decodes as ``modality``; returns ``(kind, reason)``."""
    if path.is_dir():
        return f"corrupt_{modality}", "is a directory, not a file"
    if not path.is_file():
        return "missing_file", "file not found"
    if path.stat().st_size == 0:
        return f"empty_{modality}" if modality == "audio" else f"corrupt_{modality}", "empty file"
    return PROBES[modality](path)


@dataclass
class CheckReport:
    """What ``check_manifest`` found.

    Attributes:
        manifests: The manifests checked.
        rows: Valid-or-not rows read (non-blank lines).
        media_checked: Media files opened.
        problems: Every problem, in file order.
    """

    manifests: list[str] = field(default_factory=list)
    rows: int = 0
    media_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Problem kind -> count, most frequent first."""
        return dict(Counter(p.kind for p in self.problems).most_common())

    def examples(self, kind: str, limit: int = 3) -> list[Problem]:
        """The first ``limit`` problems of one kind."""
        return [p for p in self.problems if p.kind == kind][:limit]


def check_manifest(
    path: Path,
    card: DatasetCard | None = None,
    media: bool = True,
    report: CheckReport | None = None,
    on_row: Callable[[], None] | None = None,
    allow_outside_root: bool = False,
) -> CheckReport:
    """Validate every row of one manifest and (with ``media``) open every referenced file.

    Args:
        path: The JSONL manifest.
        card: Field types and classes; default: ``card.yaml`` next to the manifest, if any.
        media: Open media files (False: only check that they exist).
        report: Report to add to (to check several manifests into one).
        on_row: Called after each row (progress display).
        allow_outside_root: Accept media paths resolving outside the manifest's directory
            (otherwise they are ``outside_root`` problems and are never opened).
    """
    report = report if report is not None else CheckReport()
    report.manifests.append(str(path))
    if card is None:
        card_path = find_card(path)
        card = read_card(card_path) if card_path is not None else None
    types = card.types() if card is not None else None
    classes = card.classes() if card is not None else None
    rows_before = report.rows
    for item in _rows(iter_manifest(path, types, classes), report, on_row):
        if isinstance(item, Problem):
            report.problems.append(item)
        elif not allow_outside_root and (outside := root_problems(item, str(path))):
            report.problems.extend(outside)
        else:
            report.problems.extend(_check_media(item, str(path), media, report))
    if report.rows == rows_before:
        report.problems.append(empty_problem(str(path)))
    return report


def _rows(
    items: Iterable[Record | Problem], report: CheckReport, on_row: Callable[[], None] | None
) -> Iterator[Record | Problem]:
    """Count rows (a row may yield several problems; count each line once)."""
    last_line = -1
    for item in items:
        line = item.line
        if line != last_line:
            report.rows += 1
            last_line = line
            if on_row is not None:
                on_row()
        yield item


def _check_media(
    record: Record, manifest: str, open_files: bool, report: CheckReport
) -> list[Problem]:
    problems: list[Problem] = []
    for modality in MEDIA_FIELDS:
        path = record.media(modality)
        if path is None:
            continue
        if open_files:
            kind, reason = probe_media(modality, path)
            report.media_checked += kind != "missing_file"
        else:
            kind, reason = ("", "") if path.is_file() else ("missing_file", "file not found")
        if kind:
            message = f"{record.data[modality]}: {reason}"
            problems.append(Problem(manifest, record.line, modality, kind, message, str(path)))
    return problems


def check_dataset(
    root: Path,
    media: bool = True,
    on_row: Callable[[], None] | None = None,
    allow_outside_root: bool = False,
) -> CheckReport:
    """Check a dataset directory: its card (if any) and every manifest it lists (or ``*.jsonl``).

    Raises:
        CardError: an unreadable card.
    """
    card_path = root / CARD_NAME
    card = read_card(card_path) if card_path.is_file() else None
    report = CheckReport()
    if card is not None:
        manifests = [root / spec.manifest for spec in card.splits.values()]
    else:
        manifests = sorted(root.glob("*.jsonl"))
    for manifest in manifests:
        if not manifest.is_file():
            report.problems.append(
                Problem(
                    str(card_path),
                    0,
                    "splits",
                    "missing_file",
                    f"manifest {manifest.name!r} listed in the card is missing",
                    str(manifest),
                )
            )
            continue
        check_manifest(manifest, card, media, report, on_row, allow_outside_root)
    if card is not None:  # split sizes and undeclared fields; missing manifests reported above
        card_level = validate_card(card, root, str(card_path))
        report.problems.extend(p for p in card_level if p.line == 0 and p.kind != "missing_file")
    return report


def check_shards(
    path: Path, media: bool = True, on_row: Callable[[], None] | None = None
) -> CheckReport:
    """Check a shard directory: shard hashes against the index, every row, every media payload.

    Problems of a sample are reported with ``line`` = its position in the shard set (1-based)
    and ``source`` = the shard file.
    """
    index_path = find_index(path)
    root = index_path.parent if index_path is not None else path
    index = read_index(path)
    card = read_card(root / CARD_NAME) if (root / CARD_NAME).is_file() else None
    report = CheckReport(manifests=[str(root / s.file) for s in index.shards])
    report.problems.extend(
        Problem(str(root), 0, None, "corrupt_shard", message) for message in verify_shards(path)
    )
    position = 0
    for shard in index.shards:
        if not (root / shard.file).is_file():
            continue
        try:
            for sample in iter_shard(root / shard.file):
                position += 1
                report.rows += 1
                report.problems.extend(_check_shard_sample(sample, position, card, media, report))
                if on_row is not None:
                    on_row()
        except ValueError as err:  # unreadable tar: reported, the other shards still checked
            report.problems.append(
                Problem(str(root / shard.file), 0, None, "corrupt_shard", str(err))
            )
    return report


def _check_shard_sample(
    sample: ShardSample, position: int, card: DatasetCard | None, media: bool, report: CheckReport
) -> list[Problem]:
    source = sample.source.rsplit(":", 1)[0]
    types = card.types() if card is not None else None
    classes = card.classes() if card is not None else None
    problems = [
        Problem(source, position, name, kind, message)
        for name, kind, message in validate_row(sample.record, types, classes)
    ]
    for modality, (payload, _) in sorted(sample.media.items()) if media else ():
        report.media_checked += 1
        kind, reason = PROBES[modality](payload)
        if kind:
            problems.append(Problem(source, position, modality, kind, reason, sample.source))
    return problems


def check_path(
    path: Path,
    media: bool = True,
    on_row: Callable[[], None] | None = None,
    allow_outside_root: bool = False,
) -> CheckReport:
    """Check a manifest file, a shard directory or a dataset directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CardError: an unreadable card.
    """
    if find_index(path) is not None:
        return check_shards(path, media, on_row)
    if path.is_dir():
        return check_dataset(path, media, on_row, allow_outside_root)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest or dataset directory at {path}")
    return check_manifest(path, media=media, on_row=on_row, allow_outside_root=allow_outside_root)


__all__ = [
    "CardError",
    "CheckReport",
    "check_dataset",
    "check_manifest",
    "check_path",
    "check_shards",
    "probe_audio",
    "probe_image",
    "probe_media",
    "probe_video",
]
