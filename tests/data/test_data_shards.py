"""Shards: round trip (same rows, same media bytes), reproducible tars, WebDataset-compatible."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import webdataset as wds
from data_helpers import write_jsonl

from omnifuse.data.card import read_card
from omnifuse.data.manifest import ManifestError, read_manifest
from omnifuse.data.shards import iter_shard, read_index, verify_shards, write_shards

Media = dict[str, Callable[..., Path]]


@pytest.fixture
def mixed_manifest(tmp_path: Path, media: Media) -> Path:
    """5 samples; image/audio/video present on some of them."""
    media["png"]("a.png")
    media["wav"]("b.wav", seconds=0.1)
    media["mp4"]("c.mp4", frames=3)
    rows = [
        {"id": "s0", "text": "zero", "image": "a.png", "label": "x"},
        {"id": "s1", "audio": "b.wav", "transcript": "one", "label": "y"},
        {"id": "s2", "video": "c.mp4", "captions": ["two", "deux"]},
        {"id": "s3", "text": "three", "image": "a.png", "audio": "b.wav"},
        {"id": "s.4/odd id", "text": "four ünïcode"},
    ]
    return write_jsonl(tmp_path / "train.jsonl", rows)


def test_round_trip_same_rows_and_same_media_bytes(mixed_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    index = write_shards(mixed_manifest, out, shard_size=2)
    assert [s.num_samples for s in index.shards] == [2, 2, 1]
    assert index.num_samples == 5 and index.modalities == ["audio", "image", "video"]
    assert read_index(out) == index
    records = read_manifest(mixed_manifest)
    samples = [s for shard in index.shards for s in iter_shard(out / shard.file)]
    assert [s.record for s in samples] == [r.data for r in records]
    for record, sample in zip(records, samples, strict=True):
        for modality, (payload, ext) in sample.media.items():
            path = record.media(modality)
            assert path is not None and payload == path.read_bytes() and ext == path.suffix
        assert set(sample.media) == {m for m in ("image", "audio", "video") if m in record.data}
    card = read_card(out / "card.yaml")
    assert card.splits["train"].size == 5 and card.splits["train"].model_extra == {
        "shards": "index.json"
    }
    assert card.types()["captions"] == "strings"


def test_shards_are_reproducible_and_verifiable(mixed_manifest: Path, tmp_path: Path) -> None:
    first = write_shards(mixed_manifest, tmp_path / "one", shard_size=3)
    second = write_shards(mixed_manifest, tmp_path / "two", shard_size=3)
    assert [s.sha256 for s in first.shards] == [s.sha256 for s in second.shards]
    digest = hashlib.sha256((tmp_path / "one" / first.shards[0].file).read_bytes()).hexdigest()
    assert digest == first.shards[0].sha256
    assert verify_shards(tmp_path / "one") == []
    shard = tmp_path / "one" / first.shards[1].file
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    (problem,) = verify_shards(tmp_path / "one")
    assert shard.name in problem and "sha256" in problem


def test_webdataset_reads_the_shards(mixed_manifest: Path, tmp_path: Path) -> None:
    index = write_shards(mixed_manifest, tmp_path / "s", shard_size=10)
    url = str(tmp_path / "s" / index.shards[0].file)
    samples = list(wds.WebDataset(url, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(5)]
    assert samples[0]["image.png"] == (tmp_path / "a.png").read_bytes()
    assert b'"id": "s.4/odd id"' in samples[4]["json"]


def test_missing_media_fails_with_line_numbers(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"id": "a", "text": "t"}, {"id": "b", "image": "x.png"}]
    )
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: image: x\.png: file not found"):
        write_shards(manifest, tmp_path / "out", shard_size=4)
    assert not (tmp_path / "out").exists()


def test_bad_arguments(tmp_path: Path, mixed_manifest: Path) -> None:
    with pytest.raises(ValueError, match="shard_size=0 must be at least 1"):
        write_shards(mixed_manifest, tmp_path / "out", shard_size=0)
    with pytest.raises(FileNotFoundError, match="no shard index"):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a valid shard index"):
        read_index(tmp_path)


def test_corrupt_shard_is_reported(tmp_path: Path, mixed_manifest: Path) -> None:
    index = write_shards(mixed_manifest, tmp_path / "s", shard_size=10)
    shard = tmp_path / "s" / index.shards[0].file
    shard.write_bytes(shard.read_bytes()[:700])
    with pytest.raises(ValueError, match="corrupt shard"):
        list(iter_shard(shard))
