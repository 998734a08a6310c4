"""A run SIGKILLed mid-training and resumed continues exactly like an uninterrupted run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("training_script.py")

RANDOMNESS = {
    # every source of randomness a resume has to reproduce: task sampling, data augmentation,
    # dropout in the model, modality dropout, plus the data order and the optimiser state
    "deterministic": True,
    "max_steps": 6,
    "checkpoint": {"every_n_steps": 2},
    "modality_dropout": {"image": 0.3},
    "multitask": {"sampler": "temperature", "temperature": 2.0},
}


def start(config: Path, run_dir: Path, resume: bool, block_at: int = 0) -> subprocess.Popen[bytes]:
    marker = run_dir.parent / f"{run_dir.name}.blocked"
    args = [str(config), str(run_dir), "1" if resume else "0", str(block_at), str(marker)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes]) -> None:
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr.decode()[-3000:]


def losses(run_dir: Path) -> dict[int, str]:
    """Step -> train/loss as written (the last row of a step wins, as after a resume)."""
    with (run_dir / "metrics" / "metrics.csv").open() as handle:
        return {int(r["step"]): r["train/loss"] for r in csv.DictReader(handle) if r["train/loss"]}


def test_sigkill_then_resume_matches_an_uninterrupted_run(
    run_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    config = run_yaml(**RANDOMNESS)
    text = config.read_text().replace("dropout: 0.0", "dropout: 0.1")
    config.write_text(text.replace("augment: false", "augment: true"))

    # the baseline runs in a subprocess too, so both runs use the same torch thread count
    # (pytest-xdist workers pin one thread; a different count changes float summation order)
    baseline = tmp_path / "baseline"
    finish(start(config, baseline, resume=False))

    killed = tmp_path / "killed"
    process = start(config, killed, resume=False, block_at=3)
    marker = tmp_path / "killed.blocked"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the run never reached step 3"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)  # after step 3, whose work is lost; last.ckpt = step 2
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    last = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert not list((killed / "checkpoints").glob(".*.tmp"))

    finish(start(config, killed, resume=True))
    expected = losses(baseline)
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]
    assert losses(killed) == expected  # the same floats, bit for bit
    a = load_file(baseline / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
