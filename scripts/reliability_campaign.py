"""SIGKILL campaign (issue 14): kill a tiny deterministic ``omnifuse train`` at targeted moments,
``--resume`` it, and compare with an uninterrupted run. Not run in CI (tests/reliability/
test_sigkill_campaign.py runs a few trials).

    python scripts/reliability_campaign.py --trials 24 --seed 0 [--full-disk] [--write-doc]

The moments are aimed at, not observed: every trial sets ``OMNIFUSE_FAULT=<moment>:<n>``
(:mod:`omnifuse.faults`), which SIGKILLs the run the n-th time it reaches that moment: ``step``
(after the backward pass, before the optimiser step), ``checkpoint-write`` (the temporary file
partly written), ``validation`` (inside a validation batch), ``worker-start`` (the DataLoader's
worker processes just started) or ``worker-batch`` (a *worker* kills itself mid-epoch: the run
must exit 1 with one clear line). ``random`` trials SIGKILL from outside after a seeded delay.
Trials take the moments in turn; ``n`` is drawn (seeded) among the arrivals an uninterrupted run
makes, counted from its ``OMNIFUSE_FAULT_LOG``.

Every trial then checks that every ``*.ckpt`` loads with ``torch.load(weights_only=True)``,
resumes with ``--resume`` (or starts afresh when no checkpoint existed yet), checks the
checkpoints again and compares the logged train losses and the final weights with the reference
run **bit for bit** (``torch.equal``, the CSV strings).

``--full-disk`` adds one run on a real tmpfs (``mount -t tmpfs -o size=...``, needs root) too
small for all its checkpoints: it must exit 1 naming the checkpoint path, keep a loadable
``last.ckpt`` and leave no temporary file.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- sigkill-campaign:begin -->", "<!-- sigkill-campaign:end -->"
TRAINING = {
    "deterministic": True,
    "max_steps": 12,
    "checkpoint": {"every_n_steps": 2},
    "val_every_n_steps": 4,
    "val_max_batches": 2,
}
MOMENTS = ("step", "checkpoint-write", "validation", "worker-start", "worker-batch", "random")
WORKER_DIED = "a data-loader worker died"


@dataclass
class Trial:
    """One trial's outcome (a row of the per-moment table)."""

    moment: str
    n: int
    exit_code: int
    hit: str
    identical: bool
    corrupt: int
    seconds: float


def make_config(work: Path) -> Path:
    """The tiny image+text run of the training tests (tests/training/conftest.py), with one
    data-loader worker and validation every 4 steps."""
    from omnifuse import datasets

    # By file, under its own name: inside pytest "conftest" is another directory's conftest.
    spec = importlib.util.spec_from_file_location(
        "omnifuse_training_conftest", ROOT / "tests" / "training" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    base_run = fixtures.base_run

    data = work / "shapesworld"
    datasets.make("shapesworld", data, size=32, progress=False, modalities=("image",), workers=1)
    run: dict[str, Any] = base_run(data)
    run["training"].update(TRAINING)
    run["data"]["num_workers"] = 1
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(run, sort_keys=False))
    return path


def start(
    config: Path, run_dir: Path, resume: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``omnifuse train`` in a subprocess; its stderr goes to a file (see :func:`wait`)."""
    args = [sys.executable, "-m", "omnifuse.cli.main", "train", str(config)]
    args += ["--run-dir", str(run_dir), *(["--resume"] if resume else [])]
    full = {**os.environ, "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    full.update(env or {})
    stderr = tempfile.TemporaryFile()  # noqa: SIM115  (wait() reads and closes it)
    process = subprocess.Popen(args, env=full, stdout=subprocess.DEVNULL, stderr=stderr)
    process.stderr_file = stderr  # type: ignore[attr-defined]
    return process


def wait(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Exit status and stderr of a :func:`start` ed run. A file, not a pipe: a data-loader
    worker orphaned by a SIGKILL keeps a pipe open until it notices (seconds later)."""
    code = process.wait(timeout=600)
    handle = process.stderr_file  # type: ignore[attr-defined]
    handle.seek(0)
    text = handle.read().decode(errors="replace")
    handle.close()
    return code, text


def finish(process: subprocess.Popen[bytes]) -> None:
    code, stderr = wait(process)
    if code != 0:
        raise RuntimeError(stderr[-3000:])


def losses(run_dir: Path) -> dict[int, str]:
    with (run_dir / "metrics" / "metrics.csv").open() as handle:
        return {int(r["step"]): r["train/loss"] for r in csv.DictReader(handle) if r["train/loss"]}


def unreadable(run_dir: Path) -> list[str]:
    bad = []
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        try:
            torch.load(path, weights_only=True)
        except Exception as err:
            bad.append(f"{path.name}: {type(err).__name__}")
    return bad


def same(reference: Path, run_dir: Path) -> bool:
    a = load_file(reference / "model" / "model.safetensors")
    b = load_file(run_dir / "model" / "model.safetensors")
    weights = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return weights and losses(reference) == losses(run_dir)


def arrivals(log: Path) -> dict[str, int]:
    """Moment -> arrivals of an uninterrupted run. ``worker-batch`` counts restart in every
    worker process: its number is the most batches one worker made (the first epoch's training
    worker, which runs from the start and so is the one a ``worker-batch:n`` kill hits)."""
    per_pid = Counter(tuple(line.split()) for line in log.read_text().splitlines())
    counts: dict[str, int] = {}
    for (_, moment), count in per_pid.items():
        if moment == "worker-batch":
            counts[moment] = max(counts.get(moment, 0), count)
        else:
            counts[moment] = counts.get(moment, 0) + count
    return counts


def on_disk(run_dir: Path) -> str:
    """What the kill left in the checkpoint dir (the trial's evidence of where it landed)."""
    ckpts = run_dir / "checkpoints"
    partial = sorted(ckpts.glob(".*.tmp"))
    if partial:
        return f"partial temp file ({partial[0].stat().st_size:,} bytes)"
    last = ckpts / "last.ckpt"
    if not last.is_file():
        return "no checkpoint yet"
    step = torch.load(last, weights_only=True, mmap=True)["global_step"]
    return f"last.ckpt at step {step}"


def kill(config: Path, run_dir: Path, moment: str, n: int, delay: float) -> tuple[int, str, str]:
    """Start a run and let ``moment``'s n-th arrival kill it (``random``: SIGKILL after
    ``delay`` s); return its exit status, the last stderr line ("TRACEBACK" if it printed one)
    and what it left on disk."""
    env = {} if moment == "random" else {"OMNIFUSE_FAULT": f"{moment}:{n}"}
    process = start(config, run_dir, env=env)
    if moment == "random":
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    code, stderr = wait(process)
    lines = stderr.strip().splitlines()
    last = "TRACEBACK" if "Traceback" in stderr else lines[-1] if lines else ""
    return code, last, on_disk(run_dir)


def run_trial(
    config: Path, work: Path, index: int, moment: str, n: int, delay: float, reference: Path
) -> Trial:
    t0 = time.monotonic()
    run_dir = work / f"trial-{index:03d}"
    code, last_line, hit = kill(config, run_dir, moment, n, delay)
    if moment == "worker-batch":
        clear = code == 1 and last_line.startswith(f"error: {WORKER_DIED}")
        hit = f"exit {code}, {'one clear line' if clear else 'UNCLEAR: ' + last_line}; {hit}"
    elif code != -signal.SIGKILL:
        hit = f"NOT KILLED (exit {code}); {hit}"
    bad = unreadable(run_dir)
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        finish(start(config, run_dir, resume=True))
    else:
        run_dir = work / f"trial-{index:03d}-fresh"
        finish(start(config, run_dir))
    bad += unreadable(run_dir)
    leftovers = list((run_dir / "checkpoints").glob(".*.tmp"))
    if leftovers:
        hit += f"; {len(leftovers)} temp file(s) left after resume"
    identical = same(reference, run_dir) and not leftovers and "UNCLEAR" not in hit
    return Trial(moment, n, code, hit, identical, len(bad), round(time.monotonic() - t0, 1))


def full_disk(config: Path, work: Path, reference: Path) -> dict[str, Any]:
    """One run on a real tmpfs holding about 3.5 checkpoints (see the module docstring)."""
    ckpt = (reference / "checkpoints" / "last.ckpt").stat().st_size
    mount = work / "tmpfs"
    mount.mkdir()
    size = int(3.5 * ckpt) + 512 * 1024  # + config, run.json, metrics, tensorboard
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        return {"mounted": False, "reason": mounted.stderr.strip()}
    try:
        code, stderr = wait(start(config, mount / "run"))
        lines = stderr.strip().splitlines()
        last = mount / "run" / "checkpoints" / "last.ckpt"
        step = torch.load(last, weights_only=True)["global_step"] if last.is_file() else None
        return {
            "mounted": True,
            "tmpfs_bytes": size,
            "checkpoint_bytes": ckpt,
            "exit_code": code,
            "last_line": lines[-1] if lines else "",
            "traceback": any(line.startswith("Traceback") for line in lines),
            "last_ckpt_step": step,
            "temp_files_left": len(list(last.parent.glob(".*.tmp"))),
        }
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def plan(
    trials: int, seed: int, counts: dict[str, int], wall: float, moments: tuple[str, ...]
) -> list[tuple[str, int, float]]:
    """``(moment, n, delay)`` per trial: ``moments`` in turn, ``n`` and the delay seeded."""
    rng = random.Random(seed)
    out = []
    for index in range(trials):
        moment = moments[index % len(moments)]
        if moment == "random":
            # Two thirds of the reference's wall time: later runs on a shared machine can be
            # faster than the reference, and a delay past a run's end kills nothing (the first
            # campaign drew over the whole wall time and 3 of its 3 random trials missed).
            out.append((moment, 0, round(rng.uniform(0.0, wall * 2 / 3), 2)))
        else:
            out.append((moment, rng.randint(1, counts[moment]), 0.0))
    return out


def campaign(
    trials: int,
    seed: int,
    budget_s: float,
    disk: bool = False,
    moments: tuple[str, ...] = MOMENTS,
) -> dict[str, Any]:
    """Run the reference, then ``trials`` kills (see the module docstring); the numbers."""
    work = Path(tempfile.mkdtemp(prefix="omnifuse-campaign-"))
    config = make_config(work)
    began = time.monotonic()
    reference = work / "reference"
    log = work / "arrivals.log"
    finish(start(config, reference, env={"OMNIFUSE_FAULT_LOG": str(log)}))
    wall = time.monotonic() - began
    counts = arrivals(log)
    done: list[Trial] = []
    for index, (moment, n, delay) in enumerate(plan(trials, seed, counts, wall, moments)):
        if time.monotonic() - began > budget_s:
            break
        trial = run_trial(config, work, index, moment, n, delay, reference)
        done.append(trial)
        print(json.dumps(asdict(trial)), flush=True)
    result: dict[str, Any] = {
        "trials": len(done),
        "identical": sum(t.identical for t in done),
        "corrupt": sum(t.corrupt for t in done),
        "arrivals": counts,
        "reference_s": round(wall, 1),
        "mean_trial_s": round(sum(t.seconds for t in done) / max(len(done), 1), 1),
        "total_s": round(time.monotonic() - began, 1),
        "load": [round(x, 1) for x in os.getloadavg()],
        "seed": seed,
        "requested": trials,
        "per_trial": [asdict(t) for t in done],
    }
    if disk:
        result["full_disk"] = full_disk(config, work, reference)
    return result


def _table(result: dict[str, Any]) -> str:
    rows = ["| moment | trials | identical | corrupt checkpoints | what the kills hit |"]
    rows.append("|---|---|---|---|---|")
    for moment in MOMENTS:
        mine = [t for t in result["per_trial"] if t["moment"] == moment]
        if not mine:
            continue
        hits = "; ".join(
            f"{'n=' + str(t['n']) if moment != 'random' else 'delay'}: {t['hit']}" for t in mine
        )
        identical = sum(t["identical"] for t in mine)
        corrupt = sum(t["corrupt"] for t in mine)
        rows.append(f"| `{moment}` | {len(mine)} | {identical} | {corrupt} | {hits} |")
    return "\n".join(rows)


def _disk_line(result: dict[str, Any]) -> str:
    disk = result.get("full_disk")
    if disk is None:
        return ""
    if not disk["mounted"]:
        return f"\n\nReal full disk: tmpfs could not be mounted ({disk['reason']})."
    return (
        f"\n\nReal full disk (a {disk['tmpfs_bytes']:,}-byte tmpfs, checkpoints of "
        f"{disk['checkpoint_bytes']:,} bytes): exit {disk['exit_code']}, traceback "
        f"{'yes' if disk['traceback'] else 'no'}, `last.ckpt` loads at step "
        f"{disk['last_ckpt_step']}, {disk['temp_files_left']} temporary files left; stderr: "
        f"`{disk['last_line']}`"
    )


def write_doc(result: dict[str, Any]) -> None:
    arrivals_text = ", ".join(f"{k} {v}" for k, v in sorted(result["arrivals"].items()))
    missed = sum(t["exit_code"] == 0 for t in result["per_trial"])
    missed_text = (
        f" {missed} of them (`random`) found the run already finished at its delay: not "
        "killed, so counted among the trials and identical runs but testing no resume."
        if missed
        else ""
    )
    section = (
        f"{BEGIN}\n"
        f"SIGKILL trials run / identical resumes / corrupt checkpoints: **{result['trials']} / "
        f"{result['identical']} / {result['corrupt']}** (goal 20 / 20 / 0).{missed_text} "
        f"{result['requested']} requested, seed {result['seed']}; "
        "`python scripts/reliability_campaign.py --trials "
        f"{result['requested']} --seed {result['seed']} --full-disk --write-doc`). Identical "
        "means bit for bit: every logged train loss and every final weight tensor "
        "(`torch.equal`), and no temporary file left. Arrivals in the uninterrupted run (the "
        f"range `n` is drawn from): {arrivals_text}. Reference run {result['reference_s']} s, "
        f"one trial (kill + resume) {result['mean_trial_s']} s, the whole campaign "
        f"{result['total_s']} s on 2 CPU cores shared with other jobs (load average "
        f"{' / '.join(str(x) for x in result['load'])} at the end).\n\n"
        f"{_table(result)}{_disk_line(result)}\n{END}"
    )
    text = DOC.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=1800.0, help="stop starting trials")
    parser.add_argument("--full-disk", action="store_true", help="also a run on a full tmpfs")
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the whole result as JSON here")
    parser.add_argument(
        "--moments", nargs="+", choices=MOMENTS, default=list(MOMENTS), help="moments, in turn"
    )
    args = parser.parse_args()
    result = campaign(args.trials, args.seed, args.budget_s, args.full_disk, tuple(args.moments))
    print(json.dumps({k: v for k, v in result.items() if k != "per_trial"}, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.write_doc:
        write_doc(result)


if __name__ == "__main__":
    main()
