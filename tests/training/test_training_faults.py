"""Faults during ``omnifuse train`` (issue 14): a second process on a held run dir, SIGTERM
(preemption: checkpoint at the current step, exit 0, exact resume), a disk full mid-checkpoint.
"""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from omnifuse.config import load_config
from omnifuse.training import train
from omnifuse.training.checkpoint import CheckpointWriteError, RunDirLocked, run_dir_lock

SCRIPT = Path(__file__).with_name("faults_script.py")
EXACT = {"deterministic": True, "max_steps": 6, "checkpoint": {"every_n_steps": 2}}


def start(
    config: Path, run_dir: Path, *args: str, hold_at: int = 0
) -> tuple[subprocess.Popen[bytes], Path]:
    marker = run_dir.parent / f"{run_dir.name}.held"
    command = [sys.executable, str(SCRIPT), str(hold_at), str(marker), str(config)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200"}
    process = subprocess.Popen(
        [*command, "--run-dir", str(run_dir), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return process, marker


def wait_for(marker: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 240
    while not marker.exists():
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(stderr.decode()[-3000:])
        assert time.monotonic() < deadline, "the run never reached its hold step"
        time.sleep(0.1)


def finish(process: subprocess.Popen[bytes]) -> str:
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return stdout.decode()


def losses(run_dir: Path) -> dict[int, str]:
    with (run_dir / "metrics" / "metrics.csv").open() as handle:
        return {int(r["step"]): r["train/loss"] for r in csv.DictReader(handle) if r["train/loss"]}


def test_a_second_train_on_a_held_run_dir_refuses(
    run_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    config = run_yaml(max_steps=3)
    run_dir = tmp_path / "run"
    first, marker = start(config, run_dir, hold_at=1)
    wait_for(marker, first)
    second, _ = start(config, run_dir, "--resume")
    _, stderr = second.communicate(timeout=240)
    message = " ".join(stderr.decode().split())
    assert second.returncode == 2, message
    assert f"run dir {run_dir} is in use by another omnifuse train (pid {first.pid})" in message
    first.send_signal(signal.SIGTERM)  # let the first one go: it checkpoints and exits 0
    assert "preempted:" in finish(first)


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    code = (
        "import fcntl, os, time\n"
        f"fd = os.open({str(run_dir / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'1'); print('held', flush=True)\n"
        "time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"held\n"
    with pytest.raises(RunDirLocked, match="pid 1\\)"), run_dir_lock(run_dir):
        pass
    holder.kill()
    holder.wait()
    with run_dir_lock(run_dir):  # the kernel dropped the dead holder's lock; the file stays
        assert (run_dir / ".lock").read_text() == f"{os.getpid()}\n"


def test_sigterm_checkpoints_exits_0_and_resumes_exactly(
    run_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    config = run_yaml(**EXACT)
    baseline = tmp_path / "baseline"
    finish(start(config, baseline)[0])

    preempted = tmp_path / "preempted"
    process, marker = start(config, preempted, hold_at=3)
    wait_for(marker, process)
    process.send_signal(signal.SIGTERM)  # at step 3: between the periodic checkpoints 2 and 4
    out = " ".join(finish(process).split())
    assert "preempted: SIGTERM: stopped at step 3" in out
    last = torch.load(preempted / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert not list((preempted / "checkpoints").glob(".*.tmp"))
    assert '"status": "preempted"' in (preempted / "run.json").read_text()

    finish(start(config, preempted, "--resume")[0])
    expected = losses(baseline)
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]
    assert losses(preempted) == expected  # bit for bit
    a = load_file(baseline / "model" / "model.safetensors")
    b = load_file(preempted / "model" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_disk_full_mid_checkpoint_keeps_the_previous_one(
    run_yaml: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(str(run_yaml(max_steps=4, checkpoint={"every_n_steps": 2})))
    run_dir = tmp_path / "run"
    real_save = torch.save

    def save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        if obj.get("global_step") == 4:  # the second checkpoint: half written, then ENOSPC
            handle.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)  # atomic_torch_save calls torch.save
    with pytest.raises(CheckpointWriteError) as caught:
        train(config, run_dir)
    monkeypatch.setattr(torch, "save", real_save)
    message = str(caught.value)
    assert message.startswith(f"cannot write checkpoint {run_dir / 'checkpoints'}")
    assert "No space left on device; the checkpoints written before are kept" in message
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2  # the previous checkpoint, intact
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert '"status": "failed"' in (run_dir / "run.json").read_text()
