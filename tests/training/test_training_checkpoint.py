"""Atomic checkpoint writes, run-directory rules, checkpoints of other omnifuse versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from omnifuse import __version__
from omnifuse.config import ConfigError, RunConfig
from omnifuse.training import train
from omnifuse.training.checkpoint import (
    CHECKPOINT_FORMAT,
    FORMAT_KEY,
    AtomicCheckpointIO,
    CheckpointWriteError,
    check_run_dir,
    read_run_json,
    remove_partial_writes,
    update_run_json,
    write_run_files,
)


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 3, "w": torch.arange(4)}, path)
    loaded = io.load_checkpoint(path, weights_only=True)
    assert loaded["step"] == 3 and loaded["w"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_crash_mid_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def crash(obj: object, handle: object) -> None:
        handle.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # temp file removed


def test_storage_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "x.ckpt", storage_options={"a": 1})


def test_run_dir_rules(tmp_path: Path) -> None:
    check_run_dir(tmp_path / "fresh", resume=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        check_run_dir(tmp_path / "fresh", resume=True)
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    (tmp_path / "old" / "checkpoints" / "step-000002.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        check_run_dir(tmp_path / "old", resume=False)


def test_run_json_records_environment_and_resumes(
    tmp_path: Path, run_config: Callable[..., RunConfig]
) -> None:
    config = run_config()
    write_run_files(tmp_path, config, resume=False, argv=["omnifuse", "train", "x.yaml"])
    record = read_run_json(tmp_path)
    assert record["argv"] == ["omnifuse", "train", "x.yaml"]
    assert record["environment"]["torch"] == torch.__version__
    assert set(record["git"]) == {"commit", "dirty"}
    assert (tmp_path / "config.yaml").read_text().startswith("name: tiny-train")
    update_run_json(tmp_path, status="completed")
    write_run_files(tmp_path, config, resume=True, argv=["again"])
    record = read_run_json(tmp_path)
    assert record["status"] == "running" and record["resumes"][0]["argv"] == ["again"]


# --- checkpoints written by another omnifuse version -------------------------------------------


def restamp(path: Path, stamp: dict[str, object] | None) -> None:
    """Rewrite ``path`` as another omnifuse would have: ``stamp`` (None: no stamp at all)."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.pop(FORMAT_KEY)
    if stamp is not None:
        checkpoint[FORMAT_KEY] = stamp
    torch.save(checkpoint, path)


def test_a_checkpoint_from_an_older_omnifuse_is_migrated(
    run_config: Callable[..., RunConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    train(run_config("training.max_steps=2"), run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)[FORMAT_KEY] == {
        "format_version": CHECKPOINT_FORMAT,
        "omnifuse": __version__,
    }
    restamp(last, None)  # written before checkpoints carried a version
    result = train(run_config("training.max_steps=3"), run_dir, resume=True)
    assert result.steps == 3
    assert f"{last} has no omnifuse format version" in caplog.text
    assert f"reading it as checkpoint format {CHECKPOINT_FORMAT}" in caplog.text
    assert torch.load(last, weights_only=True)[FORMAT_KEY]["format_version"] == CHECKPOINT_FORMAT


def test_a_checkpoint_from_a_newer_omnifuse_is_refused(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 2, FORMAT_KEY: {}}, last)
    restamp(last, {"format_version": CHECKPOINT_FORMAT + 1, "omnifuse": "9.0.0"})
    with pytest.raises(ConfigError) as caught:
        check_run_dir(tmp_path, resume=True)
    message = str(caught.value)
    assert f"{last} was written by omnifuse 9.0.0 (checkpoint format {CHECKPOINT_FORMAT + 1})" in (
        message
    )
    assert f"this is omnifuse {__version__}, which reads checkpoint formats up to 1" in message


def test_an_older_omnifuse_of_the_same_format_resumes(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 2, FORMAT_KEY: {}}, last)
    restamp(last, {"format_version": CHECKPOINT_FORMAT, "omnifuse": "0.0.1"})
    check_run_dir(tmp_path, resume=True)  # no error: the layout is the same


def test_partial_writes_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "last.ckpt").write_bytes(b"kept")
    (ckpts / ".step-000004.ckpt.abc123.tmp").write_bytes(b"PK\x03\x04 half")
    removed = remove_partial_writes(tmp_path)
    assert [p.name for p in removed] == [".step-000004.ckpt.abc123.tmp"]
    assert [p.name for p in ckpts.iterdir()] == ["last.ckpt"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_that_torch_reports_as_a_runtime_error_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    real_save = torch.save

    def save_to_a_full_disk(obj: object, writer: Any) -> None:
        # every write to /dev/full fails with ENOSPC, as on a full disk; torch's zip writer
        # then raises "RuntimeError: [enforce fail at inline_container.cc] unexpected pos"
        with open("/dev/full", "wb", buffering=0) as full:
            writer.handle = full
            real_save(obj, writer)

    monkeypatch.setattr(torch, "save", save_to_a_full_disk)
    with pytest.raises(CheckpointWriteError, match="No space left on device") as caught:
        AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert str(caught.value).startswith(f"cannot write checkpoint {path}: ")
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # temp file removed
    assert torch.load(path, weights_only=True)["step"] == 1
