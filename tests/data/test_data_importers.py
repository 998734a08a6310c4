"""Importers: each format on a small fixture; deterministic, leak-free splits; clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from omnifuse.data.card import read_card, validate_card
from omnifuse.data.check import check_dataset
from omnifuse.data.importers import (
    DatasetImportError,
    ImportOptions,
    _Sample,
    assign_splits,
    import_dataset,
)
from omnifuse.data.manifest import read_manifest

Media = dict[str, Callable[..., Path]]


def _rows(path: Path) -> list[dict[str, object]]:
    return [r.data for r in read_manifest(path)]


def _assert_consistent(out: Path) -> None:
    """Card matches the manifests and every media file opens (imports without --copy reference
    media outside ``out``, which needs the opt-in; without it they are refused)."""
    card = read_card(out / "card.yaml")
    assert validate_card(card, out) == []
    assert check_dataset(out, allow_outside_root=True).ok
    copied = all(not p.startswith("..") for p in _media_paths(out))
    assert check_dataset(out).ok == copied


def _media_paths(out: Path) -> list[str]:
    rows = [r for manifest in out.glob("*.jsonl") for r in _rows(manifest)]
    return [str(r[m]) for r in rows for m in ("image", "audio", "video") if r.get(m)]


def test_coco_captions(tmp_path: Path, media: Media) -> None:
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        media["png"](f"imgs/{i}.png", seed=i)
    coco = {
        "images": [{"id": i, "file_name": f"{i}.png"} for i in range(4)],
        "annotations": [
            {"image_id": 0, "caption": "a red box "},
            {"image_id": 0, "caption": "noise"},
            {"image_id": 1, "caption": "one"},
            {"image_id": 2, "caption": "two"},
        ],
    }
    src = tmp_path / "captions.json"
    src.write_text(json.dumps(coco))
    out = tmp_path / "out"
    options = ImportOptions(val_fraction=0.0)
    summary = import_dataset("coco", src, out, tmp_path / "imgs", options)
    assert summary.splits == {"train": 3}
    assert summary.skipped == {"images without captions": 1}  # image 3 has none: reported
    first = _rows(out / "train.jsonl")[0]
    assert first == {"id": "0", "image": "../imgs/0.png", "caption": "a red box",
                     "captions": ["a red box", "noise"]}  # fmt: skip
    _assert_consistent(out)


def test_imagefolder_stratified_split_and_copy(tmp_path: Path, media: Media) -> None:
    for label in ("cat", "dog"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(5):
            media["png"](f"src/{label}/{i}.png", seed=i)
    (tmp_path / "src" / "dog" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    summary = import_dataset(
        "imagefolder",
        tmp_path / "src",
        out,
        options=ImportOptions(0.2, 0.0, seed=3, copy_media=True),
    )
    assert summary.splits == {"train": 8, "val": 2}
    assert summary.skipped == {"non-image files": 1}
    val = _rows(out / "val.jsonl")
    assert sorted(r["label"] for r in val) == ["cat", "dog"]  # one per class
    assert read_card(out / "card.yaml").classes() == {"label": ["cat", "dog"]}
    copied = out / str(val[0]["image"])
    assert copied.is_relative_to(out) and copied.is_file()
    _assert_consistent(out)


def test_librispeech_splits_by_speaker(tmp_path: Path, media: Media) -> None:
    for speaker in ("11", "22", "33", "44"):
        chapter = tmp_path / "ls" / speaker / "7"
        chapter.mkdir(parents=True)
        lines = []
        for utt in range(2):
            uid = f"{speaker}-7-{utt:04d}"
            media["wav"](f"ls/{speaker}/7/{uid}.wav", seconds=0.1, sample_rate=8000)
            lines.append(f"{uid} HELLO WORLD {utt}")
        (chapter / f"{speaker}-7.trans.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    summary = import_dataset("librispeech", tmp_path / "ls", out, options=ImportOptions(0.25))
    assert summary.splits == {"train": 6, "val": 2}
    train, val = _rows(out / "train.jsonl"), _rows(out / "val.jsonl")
    assert {r["speaker"] for r in train}.isdisjoint({r["speaker"] for r in val})
    assert val[0]["transcript"].startswith("HELLO WORLD")  # type: ignore[union-attr]
    _assert_consistent(out)


def test_audio_csv_keeps_extra_columns(tmp_path: Path, media: Media) -> None:
    for i in range(3):
        media["wav"](f"c{i}.wav", seconds=0.1)
    src = tmp_path / "clips.csv"
    src.write_text("path,transcript,speaker\nc0.wav,hello,a\nc1.wav,there,b\nc2.wav, general ,a\n")
    summary = import_dataset("audio-csv", src, tmp_path / "out", options=ImportOptions(0.0))
    rows = _rows(tmp_path / "out" / "train.jsonl")
    assert summary.splits == {"train": 3}
    assert rows[2] == {"id": "c2", "audio": "../c2.wav", "transcript": "general", "speaker": "a"}
    assert read_card(summary.card).types()["speaker"] == "string"
    _assert_consistent(tmp_path / "out")


def test_video_csv_with_media_root(tmp_path: Path, media: Media) -> None:
    (tmp_path / "vids").mkdir()
    for i in range(4):
        media["mp4"](f"vids/v{i}.mp4", frames=3)
    src = tmp_path / "labels.csv"
    src.write_text("path,label\nv0.mp4,run\nv1.mp4,walk\nv2.mp4,run\nv3.mp4,walk\n")
    out = tmp_path / "out"
    summary = import_dataset("video-csv", src, out, tmp_path / "vids", ImportOptions(0.5))
    assert summary.splits == {"train": 2, "val": 2}
    assert sorted(r["label"] for r in _rows(out / "val.jsonl")) == ["run", "walk"]
    _assert_consistent(out)


def test_splits_are_deterministic_per_seed(tmp_path: Path, media: Media) -> None:
    media["wav"]("x.wav", seconds=0.05)
    src = tmp_path / "a.csv"
    src.write_text("path,transcript,id\n" + "".join(f"x.wav,t,{i}\n" for i in range(40)))

    def val_ids(seed: int, name: str) -> list[str]:
        import_dataset("audio-csv", src, tmp_path / name, options=ImportOptions(0.25, seed=seed))
        return [str(r["id"]) for r in _rows(tmp_path / name / "val.jsonl")]

    first = val_ids(0, "a")
    assert len(first) == 10
    assert val_ids(0, "b") == first
    assert val_ids(1, "c") != first


def test_assign_splits_respects_fractions_and_groups() -> None:
    samples = [_Sample({"id": str(i)}, group=str(i // 2)) for i in range(20)]
    splits = assign_splits(samples, 0.2, 0.1, seed=0)
    assert [splits.count(s) for s in ("train", "val", "test")] == [14, 4, 2]
    for i in range(0, 20, 2):
        assert splits[i] == splits[i + 1]  # a group never straddles splits


@pytest.mark.parametrize(
    ("fmt", "content", "match"),
    [
        ("audio-csv", "file,transcript\nx.wav,hi\n", "required: path, transcript"),
        (
            "audio-csv",
            "path,transcript\nx.wav,\n",
            r"a.csv:2: empty value in column\(s\) transc",
        ),
        ("audio-csv", "path,transcript\nmissing.wav,hi\n", "1 media file"),
        ("video-csv", "path,label\n", "no samples"),
        ("coco", "{not json", "invalid JSON"),
        ("coco", '{"images": []}', "not a COCO captions file"),
    ],
)
def test_malformed_sources_raise_import_errors(
    tmp_path: Path, media: Media, fmt: str, content: str, match: str
) -> None:
    media["wav"]("x.wav", seconds=0.05)
    src = tmp_path / "a.csv"
    src.write_text(content)
    with pytest.raises(DatasetImportError, match=match):
        import_dataset(fmt, src, tmp_path / "out")


def test_usage_mistakes_raise_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid choices: coco, imagefolder"):
        import_dataset("yolo", tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="import source not found"):
        import_dataset("coco", tmp_path / "nope.json", tmp_path / "out")
    with pytest.raises(ValueError, match="must be < 1"):
        ImportOptions(val_fraction=0.6, test_fraction=0.5)
