"""One run of the VQA grounding study: train a variant, evaluate it, log its cost and accuracy.

Usage: python scripts/vqa_study.py NAME [OVERRIDE ...] [--root runs/vqa-study] [--swapped M]

Trains ``scripts/configs/vqa-study.yaml`` with the dotted overrides (``omnifuse train``), then
``omnifuse eval`` on the validation split, and, with ``--swapped``, on a manifest whose images are
shuffled among its rows: the accuracy left there is what the model gets from the question alone.
Appends one JSON line (overrides, steps, CPU-seconds of training, wall time, load averages,
overall and per-type accuracy) to ``ROOT/results.jsonl``. CPU-seconds are the children's user +
system time, which unlike wall time does not grow with other jobs' load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).parent / "configs" / "vqa-study.yaml"
OMNIFUSE = str(Path(sys.executable).with_name("omnifuse"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], log: Path) -> tuple[float, float]:
    """Run ``command`` (output to ``log``) on one torch thread; return (CPU-s, wall-s)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cpu, wall = _children_cpu(), time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return _children_cpu() - cpu, time.monotonic() - wall


def _vqa_metrics(eval_dir: Path) -> dict[str, Any]:
    metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    vqa = metrics["tasks"]["vqa"]
    return {"samples": vqa["samples"], **vqa["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="run name (its directory under --root)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    parser.add_argument("--root", type=Path, default=Path("runs/vqa-study"))
    parser.add_argument("--val", type=Path, default=Path("runs/demo/data/shapesworld/val.jsonl"))
    parser.add_argument("--swapped", type=Path, default=None, help="image-shuffled manifest")
    parser.add_argument("--eval-only", action="store_true", help="evaluate an existing run")
    args = parser.parse_args()
    run = args.root / args.name
    run.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    train = [OMNIFUSE, "train", str(CONFIG), *args.overrides, "--run-dir", str(run)]
    cpu, wall = (
        (0.0, 0.0) if args.eval_only else _timed(train, args.root / f"{args.name}.train.log")
    )
    # --data: a task with its own training manifest has no val split of its own
    evaluate = [OMNIFUSE, "eval", str(run), "--out", str(run / "eval"), "--no-plots"]
    _timed([*evaluate, "--data", str(args.val)], args.root / f"{args.name}.eval.log")
    result: dict[str, Any] = {"name": args.name, "overrides": args.overrides}
    result |= {"train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1)}
    result |= {"load_before": load_before, "load_after": os.getloadavg()}
    result["val"] = _vqa_metrics(run / "eval")
    if args.swapped is not None:
        swapped = [*evaluate[:3], "--out", str(run / "eval-swapped"), "--no-plots"]
        _timed([*swapped, "--data", str(args.swapped)], args.root / f"{args.name}.swap.log")
        result["swapped"] = _vqa_metrics(run / "eval-swapped")
    with (args.root / "results.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
