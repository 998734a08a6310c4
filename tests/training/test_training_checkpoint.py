"""Atomic checkpoint writes and run-directory rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from omnifuse.config import ConfigError, RunConfig
from omnifuse.training.checkpoint import (
    AtomicCheckpointIO,
    check_run_dir,
    read_run_json,
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
