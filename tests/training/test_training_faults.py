"""Faults during ``omnifuse train`` (issue 14): a second process on a held run dir, SIGTERM
(preemption: checkpoint at the current step, exit 0, exact resume), a disk full mid-checkpoint,
a data-loader worker killed, NaN from an exploding learning rate under each ``on_nan`` policy.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
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
from typer.testing import CliRunner

from cli_helpers import train_app
from omnifuse.config import load_config
from omnifuse.faults import FAULT_ENV
from omnifuse.training import train
from omnifuse.training.checkpoint import CheckpointWriteError, RunDirLocked, run_dir_lock
from omnifuse.training.module import MAX_SKIP_STREAK

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
        "fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, b'1'); print('held', flush=True)\n"
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


def test_a_forked_child_of_a_killed_holder_does_not_hold_the_lock(tmp_path: Path) -> None:
    # A persistent DataLoader worker is such a child: it outlives a SIGKILLed trainer briefly.
    run_dir = tmp_path / "run"
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from omnifuse.training.checkpoint import run_dir_lock\n"
        f"with run_dir_lock(Path({str(run_dir)!r})):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60); os._exit(0)\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"held\n"
    with pytest.raises(RunDirLocked), run_dir_lock(run_dir):
        pass
    holder.kill()
    holder.wait()
    try:
        with run_dir_lock(run_dir):  # the child still runs, and holds nothing
            assert (run_dir / ".lock").read_text() == f"{os.getpid()}\n"
    finally:
        subprocess.run(["pkill", "-f", f"run_dir_lock\\(Path\\({str(run_dir)!r}"], check=False)


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


# --- a data-loader worker killed mid-epoch ------------------------------------------------------

runner = CliRunner()


def test_a_killed_worker_fails_in_one_line_and_resumes_exactly(
    run_yaml: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(run_yaml(**EXACT))
    workers = "data.num_workers=1"
    baseline, run_dir = tmp_path / "baseline", tmp_path / "run"
    done = runner.invoke(train_app(), ["train", config, workers, "--run-dir", str(baseline)])
    assert done.exit_code == 0, done.output

    # The worker SIGKILLs itself at its 6th batch: with 2 batches prefetched the run is past
    # step 2 (and its checkpoint) then, and still inside the first epoch.
    monkeypatch.setenv(FAULT_ENV, "worker-batch:6")
    failed = runner.invoke(train_app(), ["train", config, workers, "--run-dir", str(run_dir)])
    monkeypatch.delenv(FAULT_ENV)
    # Once in four full suites under xdist this run exited 1 with no output at all; the
    # exception is part of the message so that the next occurrence says what ended it.
    why = f"{failed.output!r}; exception: {failed.exception!r}"
    assert failed.exit_code == 1, why
    last = run_dir / "checkpoints" / "last.ckpt"
    line = " ".join(failed.output.split())  # rich wraps long lines
    assert "Traceback" not in failed.output
    assert line.startswith("error: a data-loader worker died (DataLoader worker (pid"), why
    assert f"the last checkpoint {last} is intact; continue with" in line
    assert f"--run-dir {run_dir} --resume" in line
    step = torch.load(last, weights_only=True)["global_step"]
    assert 2 <= step < 6
    assert '"status": "failed"' in (run_dir / "run.json").read_text()

    resumed = runner.invoke(
        train_app(), ["train", config, workers, "--run-dir", str(run_dir), "--resume"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert losses(run_dir) == losses(baseline)  # bit for bit
    a = load_file(baseline / "model" / "model.safetensors")
    b = load_file(run_dir / "model" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


# --- NaN from an exploding learning rate, under each on_nan policy ------------------------------

EXPLODING = {"max_steps": 8, "lr": 1e3, "checkpoint": {"every_n_steps": 2}}
"""AdamW moves every weight by about lr per step: the losses grow ~1000x a step and overflow
float32 a few steps in, after the checkpoint at step 2 or 4 (the other tests use lr 1e-3)."""


def finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_exploding_lr_with_on_nan_stop(run_yaml: Callable[..., Path], tmp_path: Path) -> None:
    config = str(run_yaml(**EXPLODING, on_nan="stop"))
    run_dir = tmp_path / "run"
    result = runner.invoke(train_app(), ["train", config, "--run-dir", str(run_dir)])
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert "Traceback" not in result.output
    found = re.search(r"training stopped: non-finite (loss|gradient norm) at step (\d+) ", line)
    assert found is not None, line
    step = int(found.group(2))
    assert re.search(r"in task\(s\) (colour|shape)(, shape)?: (nan|inf)", line), line
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"last good checkpoint: {last}." in line
    checkpoint = torch.load(last, weights_only=True)
    assert 2 <= checkpoint["global_step"] < step  # the checkpoint before the overflow
    assert finite(checkpoint["state_dict"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "stopped" and f"at step {step}" in record["error"]


def test_exploding_lr_with_on_nan_skip(run_yaml: Callable[..., Path], tmp_path: Path) -> None:
    config = str(run_yaml(**EXPLODING, on_nan="skip"))
    run_dir = tmp_path / "run"
    result = runner.invoke(train_app(), ["train", config, "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    found = re.search(r"trained 8 steps \(.* samples/s, (\d+) skipped\)", result.output)
    assert found is not None, result.output
    skipped = int(found.group(1))
    assert skipped > 0  # the overflowing updates were dropped and counted ...
    record = json.loads((run_dir / "run.json").read_text())
    assert record["skipped_nonfinite"] == skipped  # ... and reported
    assert record["final_metrics"]["train/skipped"] == skipped
    assert finite(load_file(run_dir / "model" / "model.safetensors"))


def test_diverged_weights_under_skip_stop_instead_of_looping_forever(
    run_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    # lr 1e30: after step 1 every forward overflows, so no batch could ever make step 2
    config = str(run_yaml(max_steps=4, lr=1e30, on_nan="skip"))
    result = runner.invoke(train_app(), ["train", config, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert f"training.on_nan=skip: {MAX_SKIP_STREAK} batches in a row were non-finite" in line
    assert "at step 2 " in line and "no checkpoint was written yet" in line
