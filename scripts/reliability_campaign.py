"""SIGKILL campaign (issue 14): kill a tiny deterministic ``omnifuse train`` at random moments,
``--resume`` it, and compare with an uninterrupted run. Not run in CI (see
tests/training/test_training_reliability_campaign.py for the fast version).

    python scripts/reliability_campaign.py --trials 20 --seed 0 [--write-doc]

Every trial: start the run, SIGKILL it after a delay drawn (seeded) uniformly over the reference
run's wall time, check every ``*.ckpt`` in the run dir loads with ``torch.load(weights_only=True)``,
resume with ``--resume`` (or start afresh when no checkpoint existed yet), and compare the logged
train losses and the final weights with the reference run **bit for bit** (``torch.equal``, the
CSV strings). The moment is *observed*, not targeted: a ``.tmp`` checkpoint present at the kill
means mid-checkpoint-write; no ``last.ckpt`` yet means startup (model build, data-loader start,
first steps); otherwise between checkpoints (mid-step).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- sigkill-campaign:begin -->", "<!-- sigkill-campaign:end -->"
TRAINING = {"deterministic": True, "max_steps": 12, "checkpoint": {"every_n_steps": 2}}


def make_config(work: Path) -> Path:
    """The tiny image+text run of the training tests (tests/training/conftest.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "training"))
    from conftest import base_run  # type: ignore[import-not-found]
    from omnifuse import datasets

    data = work / "shapesworld"
    datasets.make("shapesworld", data, size=32, progress=False, modalities=("image",), workers=1)
    run: dict[str, Any] = base_run(data)
    run["training"].update(TRAINING)
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(run, sort_keys=False))
    return path


def start(config: Path, run_dir: Path, resume: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "omnifuse.cli.main", "train", str(config)]
    args += ["--run-dir", str(run_dir), *(["--resume"] if resume else [])]
    env = {**os.environ, "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes]) -> None:
    _, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(stderr.decode()[-3000:])


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


def moment(run_dir: Path) -> str:
    ckpts = run_dir / "checkpoints"
    if list(ckpts.glob(".*.tmp")):
        return "mid-checkpoint-write"
    if not (ckpts / "last.ckpt").is_file():
        return "startup (before the first checkpoint)"
    return "between checkpoints (mid-step)"


def campaign(trials: int, seed: int, budget_s: float) -> dict[str, Any]:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="omnifuse-campaign-"))
    config = make_config(work)
    began = time.monotonic()
    reference = work / "reference"
    finish(start(config, reference))
    wall = time.monotonic() - began
    counts: dict[str, int] = {}
    done = identical = corrupt = 0
    trial_s: list[float] = []
    for trial in range(trials):
        if time.monotonic() - began > budget_s:
            break
        t0 = time.monotonic()
        run_dir = work / f"trial-{trial:03d}"
        process = start(config, run_dir)
        time.sleep(rng.uniform(0.0, wall))
        where = moment(run_dir)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.returncode == 0:
            where = "after the run finished"
        counts[where] = counts.get(where, 0) + 1
        bad = unreadable(run_dir)
        if (run_dir / "checkpoints" / "last.ckpt").is_file():
            finish(start(config, run_dir, resume=True))
        elif process.returncode != 0:
            run_dir = work / f"trial-{trial:03d}-fresh"
            finish(start(config, run_dir))
        bad += unreadable(run_dir)
        corrupt += len(bad)
        identical += same(reference, run_dir)
        done += 1
        trial_s.append(time.monotonic() - t0)
        print(
            f"trial {trial}: {where}; identical={same(reference, run_dir)}; bad={bad}", flush=True
        )
    return {
        "trials": done,
        "identical": identical,
        "corrupt": corrupt,
        "moments": counts,
        "reference_s": round(wall, 1),
        "mean_trial_s": round(sum(trial_s) / max(len(trial_s), 1), 1),
        "seed": seed,
        "requested": trials,
    }


def write_doc(result: dict[str, Any]) -> None:
    moments = "\n".join(f"  - {k}: {v}" for k, v in sorted(result["moments"].items()))
    section = (
        f"{BEGIN}\n"
        f"SIGKILL trials run / identical resumes / corrupt checkpoints: **{result['trials']} / "
        f"{result['identical']} / {result['corrupt']}** (goal 20 / 20 / 0; {result['requested']} "
        f"requested, seed {result['seed']}; `python scripts/reliability_campaign.py --trials "
        f"{result['requested']} --seed {result['seed']} --write-doc`). Identical means bit for "
        "bit: every logged train loss and every final weight tensor (`torch.equal`). Reference "
        f"run {result['reference_s']} s, one trial (kill + resume) {result['mean_trial_s']} s "
        "on 2 shared CPU cores. Observed kill moments:\n"
        f"{moments}\n{END}"
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
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=1800.0, help="stop starting trials")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    result = campaign(args.trials, args.seed, args.budget_s)
    print(json.dumps(result, indent=2))
    if args.write_doc:
        write_doc(result)


if __name__ == "__main__":
    main()
