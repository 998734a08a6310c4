"""``omnifuse data`` commands through typer's CliRunner: output and exit codes (0/1/2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from data_helpers import write_jsonl
from typer.testing import CliRunner

from omnifuse import datasets
from omnifuse.cli.data import app
from omnifuse.data.shards import read_index

Media = dict[str, Callable[..., Path]]
runner = CliRunner()


def run(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_every_command_has_help() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("make", "import", "shard", "check", "corpus"):
        assert command in result.output
        assert run(command, "--help").exit_code == 0


def test_check_exit_codes(tmp_path: Path, media: Media) -> None:
    media["png"]("ok.png")
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": "1", "image": "ok.png", "text": "t"}])
    result = run("check", good)
    assert result.exit_code == 0 and "ok: 1 rows, 1 media files" in result.output

    (tmp_path / "bad.png").write_bytes(b"garbage")
    rows = [
        {"id": "1", "image": "bad.png"},
        {"id": "2", "image": "none.png"},
        {"id": "3", "text": ""},
    ]
    result = run("check", write_jsonl(tmp_path / "bad.jsonl", rows))
    assert result.exit_code == 1
    for text in ("3 problem(s)", "corrupt_image", "missing_file", "empty_text", "bad.jsonl:2"):
        assert text in result.output

    result = run("check", tmp_path / "nothing.jsonl")
    assert result.exit_code == 2 and "no manifest or dataset directory" in result.output
    assert "Traceback" not in result.output


def test_import_exit_codes(tmp_path: Path, media: Media) -> None:
    for label in ("a", "b"):
        (tmp_path / "src" / label).mkdir(parents=True)
        media["png"](f"src/{label}/1.png")
    out = tmp_path / "out"
    result = run("import", "imagefolder", tmp_path / "src", "--out", out, "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    assert "imported imagefolder" in result.output and (out / "card.yaml").is_file()

    assert run("import", "yolo", tmp_path / "src", "--out", out).exit_code == 2
    bad_fraction = run(
        "import", "imagefolder", tmp_path / "src", "--out", out, "--val-fraction", "1.5"
    )
    assert (
        bad_fraction.exit_code == 2 and "val_fraction=1.5 must be in [0, 1)" in bad_fraction.output
    )
    csv = tmp_path / "x.csv"
    csv.write_text("path\nclip.mp4\n")
    malformed = run("import", "video-csv", csv, "--out", out)
    assert malformed.exit_code == 1 and "required: path, label" in malformed.output


def test_shard_exit_codes(tmp_path: Path, media: Media) -> None:
    media["png"]("ok.png")
    rows = [{"id": str(i), "image": "ok.png", "label": "x"} for i in range(5)]
    manifest = write_jsonl(tmp_path / "train.jsonl", rows)
    result = run("shard", manifest, "--out", tmp_path / "s", "--shard-size", "2")
    assert result.exit_code == 0 and "5 samples in 3 shard(s)" in result.output
    assert read_index(tmp_path / "s").num_samples == 5

    assert run("shard", tmp_path / "nope.jsonl", "--out", tmp_path / "t").exit_code == 2
    zero = run("shard", manifest, "--out", tmp_path / "t", "--shard-size", "0")
    assert zero.exit_code == 2 and "shard_size=0" in zero.output
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"id": "1", "image": "gone.png"}])
    result = run("shard", broken, "--out", tmp_path / "u")
    assert (
        result.exit_code == 1 and "broken.jsonl:1: image: gone.png: file not found" in result.output
    )


def test_corpus_writes_the_texts_of_the_fields(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "captions": ["a red  circle", "one circle"], "question": "what colour?"},
        {"id": "2", "captions": [], "question": "", "label": "x"},
    ]
    manifest = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "corpus.txt"
    result = run("corpus", manifest, "--field", "captions", "--field", "question", "--out", out)
    assert result.exit_code == 0 and "wrote 3 lines" in result.output
    assert out.read_text().splitlines() == ["a red circle", "one circle", "what colour?"]
    empty = run("corpus", manifest, "--field", "label2", "--out", out)
    assert empty.exit_code == 1 and "no text in fields ['label2']" in empty.output
    assert run("corpus", tmp_path / "nope.jsonl", "--field", "x", "--out", out).exit_code == 2


def test_make_calls_the_builtin_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_make(name: str, out: Path, size: int | None, seed: int, progress: bool) -> Path:
        calls.append((name, out, size, seed, progress))
        return out / "card.yaml"

    monkeypatch.setattr(datasets, "make", fake_make)
    name = datasets.list_builtin()[0]
    result = run("make", name, "--out", tmp_path, "--size", "12", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert calls == [(name, tmp_path, 12, 4, True)]
    unknown = run("make", "imagenet", "--out", tmp_path)
    assert unknown.exit_code == 2 and "unknown built-in dataset 'imagenet'" in unknown.output
    assert calls == [(name, tmp_path, 12, 4, True)]
