"""Training throughput (samples/s) and peak memory of each pretraining objective and of multi-task
runs, through the real engine (``omnifuse.training.train``) on shapesworld.

Run: ``python -m benchmarks.training_throughput [--samples 320] [--steps 24] [--preset small]``.
Each scenario trains in its own process (so ``ru_maxrss`` is that scenario's peak); samples/s is
measured by the engine over every batch after the first two (data loading included), best of
``--repeats`` runs. The table
goes into ``docs/benchmarks.md`` (section ``training``). ``--quick`` runs a smoke version.

``--baseline DIR`` (a checkout of other code, e.g. ``git worktree add /tmp/base main``) times
the multi-task scenarios with that checkout's ``src`` and with this one, in alternating rounds,
and writes the before/after table (section ``training_multitask``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._report import machine, write_section

HEADS: dict[str, Any] = {
    "image_embed": {"type": "projection", "dim": 128, "source": "image"},
    "text_embed": {"type": "projection", "dim": 128, "source": "text"},
    "itm": {"type": "classification", "num_classes": 2},
    "shape": {"type": "classification", "num_classes": 6, "source": "image"},
    "mlm": {"type": "mlm", "source": "text"},
    "recon": {"type": "reconstruction", "source": "image"},
    "caption": {
        "type": "caption_decoder",
        "dim": 128,
        "num_layers": 2,
        "num_heads": 4,
        "max_length": 48,
    },
}
PAIR = {"a": "image", "b": "text", "head_a": "image_embed", "head_b": "text_embed"}
TASKS: dict[str, Any] = {
    "contrastive": {"type": "contrastive", **PAIR},
    "matching": {"type": "matching", "head": "itm", **PAIR},
    "mlm": {"type": "mlm", "head": "mlm"},
    "masked_modeling": {"type": "masked_modeling", "modality": "image", "head": "recon"},
    "captioning": {"type": "captioning", "head": "caption", "target": "caption"},
    "classification": {"type": "classification", "head": "shape", "target": "label"},
}
PRETRAINING = ("contrastive", "matching", "mlm", "masked_modeling", "captioning")
SCENARIOS: dict[str, dict[str, Any]] = {
    **{name: {"tasks": [name], "multitask": {}} for name in PRETRAINING},
    "multi-task (1 sampled task/step)": {
        "tasks": [*PRETRAINING, "classification"],
        "multitask": {"sampler": "temperature", "temperature": 2.0},
    },
    "multi-task (all 6/step, joint sum)": {
        "tasks": [*PRETRAINING, "classification"],
        "multitask": {"tasks_per_step": "all"},
    },
    "multi-task (all 6/step, uncertainty + PCGrad)": {
        "tasks": [*PRETRAINING, "classification"],
        "multitask": {"tasks_per_step": "all", "weighting": "uncertainty", "gradient": "pcgrad"},
    },
}


def run_config(data: Path, scenario: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A run of the preset with every benchmark head and the scenario's tasks."""
    from omnifuse.config.loader import read_yaml, resolve_config_path

    config = read_yaml(resolve_config_path(args.preset))
    config["model"]["heads"].update(HEADS)
    config["data"] = {
        "train": str(data / "train.jsonl"),
        "batch_size": args.batch_size,
        "fields": ["label", "caption"],
    }
    config["tasks"] = {name: TASKS[name] for name in scenario["tasks"]}
    config["training"] = {
        "max_steps": args.steps,
        "multitask": scenario["multitask"],
        "progress_bar": False,
        "log_every_n_steps": 1000,
        "checkpoint": {"every_n_steps": 10_000},
    }
    return config


def child(config_path: Path, run_dir: Path) -> None:
    """Train one scenario in this process; print samples/s and peak RSS as JSON."""
    from omnifuse.config import load_config
    from omnifuse.training import train
    from omnifuse.training.callbacks import StepMetrics

    class SkipWarmup(StepMetrics):
        """StepMetrics' wall-clock rate, plus process CPU time, without the first two batches
        (allocations, caches)."""

        cpu_seconds = 0.0
        _cpu_start = 0.0

        def on_train_batch_start(self, trainer: Any, *rest: Any) -> None:
            super().on_train_batch_start(trainer, *rest)
            self._cpu_start = time.process_time()

        def on_train_batch_end(self, trainer: Any, *rest: Any) -> None:
            if trainer.global_step <= 2:
                return
            super().on_train_batch_end(trainer, *rest)
            self.cpu_seconds += time.process_time() - self._cpu_start

    meter = SkipWarmup(log_every_n_steps=1000)
    train(load_config(config_path), run_dir, callbacks=[meter])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_rate = meter.samples / meter.cpu_seconds if meter.cpu_seconds else 0.0
    print(json.dumps({"rate": meter.mean_rate, "cpu_rate": cpu_rate, "peak_mib": peak_mib}))


MULTITASK = [name for name in SCENARIOS if name.startswith("multi-task")]


def measure(
    name: str,
    data: Path,
    work: Path,
    args: argparse.Namespace,
    repeat: int,
    source: Path | None = None,
) -> dict[str, Any]:
    """Train scenario ``name`` in a child process; with ``source``, that checkout's ``src``
    comes first on its import path (the benchmark code stays this one)."""
    config = run_config(data, SCENARIOS[name], args)
    tag = "" if source is None else "_baseline"
    slug = "".join(c if c.isalnum() else "_" for c in name) + f"{tag}_{repeat}"
    path = work / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.training_throughput",
        "--child",
        str(path),
        str(work / slug),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def make_data(out: Path, samples: int) -> Path:
    from omnifuse import datasets

    datasets.make("shapesworld", out, size=samples, progress=False, modalities=("image",))
    return out


def best(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The best rate and CPU rate and the largest peak of repeated runs: other load on the
    machine only ever slows a run down."""
    return {
        "rate": max(run["rate"] for run in runs),
        "cpu_rate": max(run["cpu_rate"] for run in runs),
        "peak_mib": max(run["peak_mib"] for run in runs),
    }


def compare(baseline: Path, data: Path, work: Path, args: argparse.Namespace) -> list[str]:
    """Table rows of the multi-task scenarios, baseline vs this code, in alternating rounds."""
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for name in MULTITASK:
            for source in (baseline, None):
                runs.setdefault((name, source is None), []).append(
                    measure(name, data, work, args, repeat, source)
                )
                print(name, "after" if source is None else "before", runs[name, source is None][-1],
                      os.getloadavg(), flush=True)  # fmt: skip
    rows = []
    for name in MULTITASK:
        before, after = best(runs[name, False]), best(runs[name, True])
        rows.append(
            f"| {name} | {before['cpu_rate']:.1f} | {after['cpu_rate']:.1f} | "
            f"{after['cpu_rate'] / before['cpu_rate']:.2f}x | {before['rate']:.1f} | "
            f"{after['rate']:.1f} | {before['peak_mib']:.0f} | {after['peak_mib']:.0f} |"
        )
    return rows


def write_comparison(rows: list[str], baseline: Path, args: argparse.Namespace) -> None:
    load = os.getloadavg()
    body = "\n".join(
        [
            "## Multi-task training: before and after shared encoder passes and lean PCGrad",
            "",
            f"`benchmarks/training_throughput.py --baseline {baseline}`: the multi-task "
            "scenarios of the table above (same model, data and settings: "
            f"`{args.preset}` preset, batch {args.batch_size}, {args.steps} optimiser steps), "
            "each trained in its own process with the baseline checkout's code (*before*) and "
            f"with this code (*after*), alternating, best of {args.repeats} round(s). Samples "
            "per CPU-second is the contention-robust figure; wall-clock rates depend on the "
            "other jobs sharing the cores. "
            f"Machine: {machine()}; load average (1/5/15 min) when done: "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
            "",
            "| scenario | before samples/CPU-s | after samples/CPU-s | speed-up (CPU) | "
            "before samples/s (wall) | after samples/s (wall) | before peak MiB | "
            "after peak MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    write_section("training_multitask", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=320)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per scenario (best kept).")
    parser.add_argument("--quick", action="store_true", help="Smoke run: few samples/steps.")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="A checkout to compare with on the multi-task scenarios (its src/ is imported).",
    )
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.samples, args.steps, args.batch_size, args.repeats = 48, 4, 4, 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_data(work / "shapesworld", args.samples)
        if args.baseline is not None:
            rows = compare(args.baseline, data, work, args)
            print("\n".join(rows))
            if not args.quick:
                write_comparison(rows, args.baseline, args)
            return
        rows = []
        for name in SCENARIOS:
            r = best([measure(name, data, work, args, i) for i in range(args.repeats)])
            rows.append(f"| {name} | {r['rate']:.1f} | {r['cpu_rate']:.1f} | {r['peak_mib']:.0f} |")
            print(rows[-1], flush=True)
    if args.quick:
        return
    load = os.getloadavg()[0]
    body = "\n".join(
        [
            "## Training throughput",
            "",
            f"`benchmarks/training_throughput.py`: `{args.preset}` preset (four encoders) plus "
            f"one head per objective, shapesworld image+caption ({args.samples} samples), batch "
            f"{args.batch_size}, {args.steps} optimiser steps through `omnifuse.training.train` "
            "(fp32, AdamW, one process); samples/s over all steps after the second, data "
            f"loading included; best of {args.repeats} runs. Other jobs shared this machine, "
            "so wall-clock rates are lower bounds; samples per CPU-second (this process's CPU "
            "time, all threads) is the contention-robust figure. Peak memory is the process's "
            "`ru_maxrss`. "
            f"Machine: {machine()}; 1-min load average when done: {load:.1f}.",
            "",
            "| scenario | samples/s (wall) | samples per CPU-second | peak RSS (MiB) |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )
    write_section("training", body)


if __name__ == "__main__":
    main()
