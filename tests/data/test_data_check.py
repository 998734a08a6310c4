"""``check``: every corrupt-file case is found by actually opening the media."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from data_helpers import write_jsonl

from omnifuse.data.card import DatasetCard, FieldSpec, SplitSpec, write_card
from omnifuse.data.check import check_dataset, check_manifest, check_path, probe_media
from omnifuse.data.shards import write_shards

Media = dict[str, Callable[..., Path]]


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_valid_media_of_every_modality_pass(tmp_path: Path, media: Media) -> None:
    for modality, path in [("image", media["png"]()), ("audio", media["wav"]()),
                           ("video", media["mp4"](frames=4))]:  # fmt: skip
        assert probe_media(modality, path) == ("", "")


@pytest.mark.parametrize(
    ("modality", "make", "kind"),
    [
        ("image", lambda m, d: d / "missing.png", "missing_file"),
        ("image", lambda m, d: _truncate(m["png"]("t.png")), "corrupt_image"),
        ("image", lambda m, d: _write(d / "junk.png", b"not an image at all"), "corrupt_image"),
        ("image", lambda m, d: _write(d / "zero.png", b""), "corrupt_image"),
        ("audio", lambda m, d: _silent_wav(d / "empty.wav"), "empty_audio"),
        ("audio", lambda m, d: _write(d / "zero.wav", b""), "empty_audio"),
        ("audio", lambda m, d: _write(d / "junk.wav", b"RIFF" + bytes(range(60))), "corrupt_audio"),
        ("video", lambda m, d: _write(d / "junk.mp4", bytes(range(256)) * 8), "corrupt_video"),
        ("video", lambda m, d: _truncate(m["mp4"]("t.mp4"), 0.05), "corrupt_video"),
        ("video", lambda m, d: m["wav"]().rename(d / "sound.mp4"), "corrupt_video"),
    ],
    ids=[
        "missing", "truncated-png", "junk-png", "zero-byte-png", "zero-frames-wav",
        "zero-byte-wav", "junk-wav", "junk-mp4", "truncated-mp4", "audio-only",
    ],
)  # fmt: skip
def test_corrupt_media_is_detected(
    tmp_path: Path,
    media: Media,
    modality: str,
    make: Callable[[Media, Path], Path],
    kind: str,
) -> None:
    found, reason = probe_media(modality, make(media, tmp_path))
    assert found == kind
    assert reason


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


def _silent_wav(path: Path) -> Path:
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    return path


def test_report_counts_problems_per_kind_with_lines(tmp_path: Path, media: Media) -> None:
    media["png"]("good.png")
    _truncate(media["png"]("bad.png"))
    rows = [
        {"id": "1", "text": "fine", "image": "good.png"},
        {"id": "2", "image": "bad.png"},
        {"id": "3", "image": "gone.png"},
        {"id": "4", "text": ""},
        {"id": "5", "captions": "not a list"},
        {"id": "1", "text": "dup"},
        "{broken json",
    ]
    report = check_manifest(write_jsonl(tmp_path / "m.jsonl", rows))
    assert report.rows == 7
    assert report.media_checked == 2  # the missing file is not opened
    assert report.counts() == {
        "corrupt_image": 1,
        "missing_file": 1,
        "empty_text": 1,
        "wrong_type": 1,
        "duplicate_id": 1,
        "invalid_json": 1,
    }
    (missing,) = report.examples("missing_file")
    assert missing.line == 3 and missing.path == str(tmp_path / "gone.png")
    assert not report.ok


def test_no_media_mode_only_checks_existence(tmp_path: Path, media: Media) -> None:
    _truncate(media["png"]("bad.png"))
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "1", "image": "bad.png"}])
    assert check_manifest(manifest, media=False).ok
    assert not check_manifest(manifest, media=True).ok


def test_dataset_directory_uses_card_classes(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "train.jsonl", [{"id": "1", "label": "cat"}, {"id": "2", "label": "cow"}]
    )
    card = DatasetCard(
        name="pets",
        splits={
            "train": SplitSpec(manifest="train.jsonl", size=2),
            "val": SplitSpec(manifest="val.jsonl", size=0),
        },
        fields={"label": FieldSpec(type="class", classes=["cat", "dog"])},
    )
    write_card(card, tmp_path / "card.yaml")
    report = check_dataset(tmp_path)
    assert sorted((p.kind, p.line) for p in report.problems) == [
        ("missing_file", 0),  # val.jsonl listed in the card but absent
        ("unknown_label", 2),
    ]
    assert check_path(tmp_path / "train.jsonl").counts() == {"unknown_label": 1}


def test_check_path_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest or dataset directory"):
        check_path(tmp_path / "nothing")


def test_shard_directory_check_opens_payloads_and_hashes(tmp_path: Path, media: Media) -> None:
    media["png"]("ok.png")
    media["wav"]("ok.wav", seconds=0.1)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    rows = [
        {"id": "1", "image": "ok.png", "audio": "ok.wav"},
        {"id": "2", "image": "bad.png"},
        {"id": "3", "image": "ok.png"},
    ]
    write_shards(write_jsonl(tmp_path / "m.jsonl", rows), tmp_path / "s", shard_size=2)
    report = check_path(tmp_path / "s")
    assert (report.rows, report.media_checked) == (3, 4)
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.kind) == (2, "image", "corrupt_image")
    assert problem.path is not None and problem.path.endswith("shard-000000.tar:000000001")

    second = tmp_path / "s" / "shard-000001.tar"
    second.write_bytes(second.read_bytes()[:100])
    kinds = check_path(tmp_path / "s").counts()
    assert kinds == {"corrupt_image": 1, "corrupt_shard": 2}  # sha256 mismatch + unreadable tar
