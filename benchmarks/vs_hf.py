"""omnifuse against Hugging Face transformers at the same shapes and the same work, side by side.

Run: ``python -m benchmarks.vs_hf [--rounds 5] [--threads 2]``; ``--quick`` is a smoke run at tiny
shapes that writes nothing. Each group builds an omnifuse model (from a run config) and a
transformers model of the same layers, widths, heads, MLP, vocabulary, lengths, batch and dropout
(:mod:`benchmarks._twins`); their parameter counts must agree within 1 %. The two are timed in
one process, in rounds that alternate which goes first; each round also measures the machine's
GEMM throughput and the share of CPU other processes used, so a noisy round shows itself.
Throughput is the median over rounds (min-max beside it), the ratio is omnifuse / HF, and MFU is
analytic FLOPs per second over the best GEMM rate measured (cross-checked against
``torch.utils.flop_counter.FlopCounterMode`` on one step of each side). The table goes into
``docs/benchmarks.md`` (section ``vs_hf``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

from benchmarks import _twins, _twins_asr
from benchmarks._report import write_section
from benchmarks._twins import Pair, Shapes, Step

PARAM_TOLERANCE = 0.01
"""Largest relative difference of parameter counts between the two sides of a pair."""


GOALS = {
    "CLIP contrastive training, fp32": 1.0,
    "ViT+GPT-2 captioner training": 1.0,
    "caption generation": 2.0,
    "ASR training": 5.0,
}
"""Issue 13's omnifuse / HF goal per group (by name prefix), quoted beside the table."""


@dataclass(frozen=True)
class Group:
    """One comparison: how to build its pair, its unit and which GEMM peak its MFU uses."""

    name: str
    build: Callable[[], Pair]
    unit: str = "samples/s"
    dtype: torch.dtype = torch.float32


@dataclass
class Row:
    """A group's results: per-round rates of each side plus the round conditions."""

    group: str
    unit: str
    omnifuse_params: int
    hf_params: int
    analytic_gflop: float
    counted_gflop: dict[str, float]
    rates: dict[str, list[float]] = field(default_factory=lambda: {"omnifuse": [], "hf": []})
    cpu_rates: dict[str, list[float]] = field(default_factory=lambda: {"omnifuse": [], "hf": []})
    gemm_gflops: list[float] = field(default_factory=list)
    others_cpu: list[float] = field(default_factory=list)
    mfu: dict[str, float] = field(default_factory=dict)

    def median(self, side: str) -> float:
        return statistics.median(self.rates[side])

    @property
    def ratio(self) -> float:
        """omnifuse / HF median throughput."""
        return self.median("omnifuse") / self.median("hf")

    @property
    def cpu_ratio(self) -> float:
        """omnifuse / HF median work per CPU-second of this process (robust to other load)."""
        return statistics.median(self.cpu_rates["omnifuse"]) / statistics.median(
            self.cpu_rates["hf"]
        )


def check_params(group: str, omnifuse: int, hf: int, tolerance: float = PARAM_TOLERANCE) -> None:
    """Fail unless the two sides have the same parameter count within ``tolerance``.

    Raises:
        ValueError: naming the group, both counts and the relative difference.
    """
    difference = abs(omnifuse - hf) / max(omnifuse, hf)
    if difference > tolerance:
        raise ValueError(
            f"{group}: omnifuse has {omnifuse:,} parameters, transformers {hf:,} "
            f"({difference:.1%} apart; the benchmark needs the same shapes within {tolerance:.0%})"
        )


# ------------------------------------------------------------------------------ measurements


def gemm_probe(dtype: torch.dtype, n: int = 1024, seconds: float = 0.15) -> float:
    """Measured GFLOP/s of ``[n, n] @ [n, n]`` matrix products in ``dtype`` right now."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: first-call allocation and kernel selection
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:  # >= 2 products when starved
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def _busy_cpu_seconds() -> tuple[float, int]:
    """(CPU-seconds every core of the machine spent busy since boot, number of cores)."""
    with open("/proc/stat") as handle:
        lines = handle.read().splitlines()
    # user nice system idle iowait irq softirq steal ...: busy = user..softirq minus idle/iowait
    fields = [float(x) for x in lines[0].split()[1:8]]
    busy = sum(fields) - fields[3] - fields[4]
    cores = sum(1 for line in lines if line.startswith("cpu") and line[3].isdigit())
    return busy / os.sysconf("SC_CLK_TCK"), cores


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class OthersMeter:
    """Share of the machine's CPU used by other processes between start and stop: busy time of
    all cores (``/proc/stat``) minus this process's own (``getrusage``), over cores x wall."""

    def start(self) -> None:
        self._busy, self.cores = _busy_cpu_seconds()
        self._own, self._wall = _own_cpu_seconds(), time.perf_counter()

    def stop(self) -> float:
        busy, _ = _busy_cpu_seconds()
        others = (busy - self._busy) - (_own_cpu_seconds() - self._own)
        share = others / (self.cores * (time.perf_counter() - self._wall))
        return min(1.0, max(0.0, share))  # clock-tick granularity can overshoot short rounds


def rate(step: Step, work: int, seconds: float) -> tuple[float, float]:
    """Work units per wall-clock second and per CPU-second of this process (all threads) of
    ``step`` run back to back for at least ``seconds`` (and at least once)."""
    calls, start, cpu = 0, time.perf_counter(), _own_cpu_seconds()
    while calls < 1 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    wall, cpu = time.perf_counter() - start, _own_cpu_seconds() - cpu
    return work * calls / wall, work * calls / cpu


def _onednn_linear_flops(
    x_shape: Sequence[int], *args: object, out_shape: Sequence[int], **kwargs: object
) -> int:
    """FLOPs of ``mkldnn::_linear_pointwise`` (both overloads: ``x [.., K]`` times a weight
    ``[N, K]`` into ``out [.., N]``); omnifuse's fused step and encoder run their projections
    there, which ``FlopCounterMode`` does not count by itself."""
    return 2 * math.prod(out_shape) * int(x_shape[-1])


# Once per process (a second registration raises), and not over a formula torch may ship later.
if hasattr(torch.ops.mkldnn, "_linear_pointwise") and (
    torch.ops.mkldnn._linear_pointwise not in flop_registry
):
    register_flop_formula(torch.ops.mkldnn._linear_pointwise)(_onednn_linear_flops)


def counted_gflop(step: Step) -> float:
    """GFLOP of one ``step`` as ``FlopCounterMode`` counts them (matmuls, convs, attention)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops()) / 1e9


def measure(group: Group, rounds: int, seconds: float) -> Row:
    """Build ``group``'s pair, check its parameters, then time it in alternating rounds."""
    pair = group.build()
    check_params(group.name, pair.omnifuse.params, pair.hf.params)
    sides = {"omnifuse": pair.omnifuse.step, "hf": pair.hf.step}
    row = Row(
        group.name,
        group.unit,
        pair.omnifuse.params,
        pair.hf.params,
        pair.flops / 1e9,
        {name: counted_gflop(step) for name, step in sides.items()},
    )
    meter = OthersMeter()
    for r in range(rounds):
        meter.start()
        row.gemm_gflops.append(gemm_probe(group.dtype))
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            wall, cpu = rate(sides[name], pair.work, seconds)
            row.rates[name].append(wall)
            row.cpu_rates[name].append(cpu)
        row.others_cpu.append(meter.stop())
    peak = max(row.gemm_gflops) * 1e9
    for name in sides:
        row.mfu[name] = pair.flops * row.median(name) / pair.work / peak
    return row


# ------------------------------------------------------------------------------ groups


def asr_available() -> bool:
    """Whether omnifuse's Whisper can read clips at their own length (``window: input``)."""
    from omnifuse.config.audio import AudioHFConfig

    return "window" in AudioHFConfig.model_fields


def groups(quick: bool, work: Path) -> list[Group]:
    """Every comparison, at the issue's shapes (or tiny ones with ``quick``); ``work`` holds
    the Whisper directory of the ASR groups."""
    if quick:
        s = Shapes(dim=32, layers=1, heads=2, image_size=32, patch=8, text_length=16, batch=4)
        gen_batches, new_tokens = (1, 2), 8
        asr = _twins_asr.ASRShapes(batch=2, target_tokens=8, dim=32, layers=1)
    else:
        s, gen_batches, new_tokens = Shapes(), (1, 16), 32
        asr = _twins_asr.ASRShapes()
    out = [
        Group("CLIP contrastive training, fp32", lambda: _twins.clip_pair(s, False)),
        Group(
            "CLIP contrastive training, bf16 autocast",
            lambda: _twins.clip_pair(s, True),
            dtype=torch.bfloat16,
        ),
        Group("ViT+GPT-2 captioner training", lambda: _twins.captioner_pair(s)),
    ]
    for b in gen_batches:
        shapes = Shapes(**{**asdict(s), "batch": b})
        out += [
            Group(
                f"caption generation, batch {b}, {new_tokens} tokens (ViT encoder included)",
                lambda shapes=shapes: _twins.generation_pair(shapes, new_tokens),  # type: ignore[misc]
                unit="tokens/s",
            ),
            Group(
                f"caption generation, decode only, batch {b}, {new_tokens} tokens "
                "(same encoder output)",
                lambda shapes=shapes: _twins.decoding_pair(shapes, new_tokens),  # type: ignore[misc]
                unit="tokens/s",
            ),
        ]
    if asr_available():

        def path() -> Path:  # converted on first use, so other groups never wait for it
            return _twins_asr.whisper_dir(work, asr)

        clip = f"{asr.seconds:g}-s clips"
        out += [
            Group(
                f"ASR training, {clip}, batch {asr.batch} (HF: 30-s window)",
                lambda: _twins_asr.asr_training_pair(path(), asr),
            ),
            Group(
                f"ASR decoding, {clip}, batch {asr.batch}, {asr.target_tokens} tokens "
                "(HF: 30-s window)",
                lambda: _twins_asr.asr_decoding_pair(path(), asr),
                unit="tokens/s",
            ),
        ]
    return out


# ------------------------------------------------------------------------------ report


def _range(values: Sequence[float], fmt: str = ".0f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def table(rows: Sequence[Row]) -> list[str]:
    """Markdown table lines of ``rows``."""
    lines = [
        "| group | unit | params omnifuse / HF | omnifuse median (min-max) | HF median (min-max) "
        "| ratio | ratio per CPU-s | MFU omnifuse / HF | GFLOP/step analytic (counted omnifuse "
        "/ HF) | GEMM GFLOP/s | others' CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        counted = " / ".join(f"{r.counted_gflop[s]:.2f}" for s in ("omnifuse", "hf"))
        lines.append(
            f"| {r.group} | {r.unit} | {r.omnifuse_params / 1e6:.3f} M / {r.hf_params / 1e6:.3f} M "
            f"| {r.median('omnifuse'):.1f} ({_range(r.rates['omnifuse'], '.1f')}) "
            f"| {r.median('hf'):.1f} ({_range(r.rates['hf'], '.1f')}) | **{r.ratio:.2f}x** "
            f"| {r.cpu_ratio:.2f}x "
            f"| {r.mfu['omnifuse']:.0%} / {r.mfu['hf']:.0%} | {r.analytic_gflop:.2f} ({counted}) "
            f"| {_range(r.gemm_gflops)} | {_range([100 * x for x in r.others_cpu])} % |"
        )
    return lines


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def write_report(rows: Sequence[Row], args: argparse.Namespace, load: Sequence[float]) -> None:
    """The ``vs_hf`` section of docs/benchmarks.md."""
    import transformers

    rows_by = {r.group: r for r in rows}
    fp32 = rows_by.get("CLIP contrastive training, fp32")
    bf16 = rows_by.get("CLIP contrastive training, bf16 autocast")
    extra = [
        f"- {r.group}: omnifuse / HF **{r.ratio:.2f}x** wall-clock, {r.cpu_ratio:.2f}x per "
        f"CPU-second (goal >= {goal:g}x)."
        for r in rows
        for prefix, goal in GOALS.items()
        if r.group.startswith(prefix)
    ]
    if fp32 is not None and bf16 is not None:
        own = bf16.median("omnifuse") / fp32.median("omnifuse")
        theirs = bf16.median("hf") / fp32.median("hf")
        own_cpu = statistics.median(bf16.cpu_rates["omnifuse"]) / statistics.median(
            fp32.cpu_rates["omnifuse"]
        )
        extra.append(
            f"- bf16 autocast vs own fp32, CLIP training (two rows, not interleaved): omnifuse "
            f"**{own:.2f}x** wall-clock ({own_cpu:.2f}x per CPU-second), transformers "
            f"{theirs:.2f}x (goal for omnifuse: >= 1.4x)."
        )
    body = [
        "## omnifuse vs Hugging Face transformers, same shapes",
        "",
        f"`benchmarks/vs_hf.py`, {datetime.date.today().isoformat()}: {cpu_model()} "
        f"({os.cpu_count()} cores, shared with other jobs), {args.threads} torch threads, "
        f"torch {torch.__version__}, transformers {transformers.__version__}; 1/5/15-min load "
        f"average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. Each row: "
        f"{args.rounds} rounds alternating which side runs first, each side >= "
        f"{args.seconds:.0f} s per round; AdamW steps (zero grad, forward, backward, update) "
        "for training, greedy decoding with a KV cache for generation. Ratio = omnifuse / HF "
        "median. MFU = analytic FLOPs/s over the best GEMM rate measured in that row "
        "(1024^3 matmul in the row's dtype); the counted GFLOP come from "
        "`FlopCounterMode`. *Others' CPU* is the share of the machine other processes used "
        "during the rounds: above ~10 % the absolute rates are depressed, the ratios less so "
        "(both sides share each round).",
        "",
        *table(rows),
        "",
        *extra,
        "",
        "Pairs (`benchmarks/_twins.py`, `_twins_asr.py`), dropout 0 everywhere, gelu on both "
        "sides, parameters counted over the modules each step runs:",
        "",
        "- *CLIP*: omnifuse ViT (64 px, patch 8, [CLS]) + text Transformer (byte tokenizer, "
        "vocabulary 263, 32 positions), 256 wide, 4 layers, 4 heads, MLP 1024, linear "
        "projections, `contrastive` task; vs `CLIPModel` of the same config "
        "(`return_loss=True`). Batch 64.",
        "- *Captioner*: ViT as above + `caption_decoder` (4 layers, 256 wide, cross-attention, "
        "tied embeddings, 32 positions), `captioning` task on 31-byte captions + EOS; vs "
        "`VisionEncoderDecoderModel(ViTModel, GPT2LMHeadModel(add_cross_attention))`, labels "
        "pre-tokenised. Batch 64.",
        "- *Generation*: the same untrained captioners, greedy, EOS disabled on both sides so "
        "every row makes exactly 32 tokens. *ViT encoder included*: `CaptioningTask.generate` "
        "(encode + `omnifuse.heads.decoding.decode`) vs `generate(pixel_values=..., "
        "num_beams=1, use_cache=True)`; the encoder pass is the same work on both sides and "
        "caps the ratio. *Decode only*: both decoders get the same precomputed image tokens, "
        "`decode(head, features, options)` vs `generate(encoder_outputs=BaseModelOutput(...))`; "
        "parameters counted are the decoders'.",
        "- *ASR*: OpenAI Whisper tiny.en converted by `omnifuse convert whisper-ct2`; omnifuse "
        "`audio: {type: hf, window: input}` + `whisper_decoder` reads each 3-s clip at its own "
        "length (~300 frames); transformers' `WhisperForConditionalGeneration` gets the usual "
        "30-s `input_features` (3,000 frames). Same prompt + 24 target tokens. The analytic "
        "FLOPs (and so both MFUs) count only the 3-s clip's work: HF's padding is not useful "
        "work, which its counted GFLOP show.",
    ]
    write_section("vs_hf", "\n".join(body))


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="Per side and round (at least one call)."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="Run only groups whose name contains this.")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    parser.add_argument("--quick", action="store_true", help="Tiny shapes, 2 short rounds.")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 2, 0.05
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for group in groups(args.quick, Path(work)):
            if args.only in group.name:
                rows.append(measure(group, args.rounds, args.seconds))
                print(table(rows)[-1], flush=True)
    if args.json is not None:
        summary = [asdict(r) | {"ratio": r.ratio, "cpu_ratio": r.cpu_ratio} for r in rows]
        args.json.write_text(json.dumps(summary, indent=1))
    if not args.quick and not args.only:  # only a complete run replaces the published table
        write_report(rows, args, os.getloadavg())
    return rows


if __name__ == "__main__":
    main()
