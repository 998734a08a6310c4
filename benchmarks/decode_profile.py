"""Where a greedy decoding step's time goes: the captioner of ``benchmarks/vs_hf.py``'s generation
rows, decode only (precomputed image tokens), at batch 1 and 16.

Run: ``python -m benchmarks.decode_profile [--batches 1 16] [--threads 1]``. Prints, per batch,
CPU-ms per decode of 32 tokens without the profiler, the same decode's projections alone (every
projection of the fused step, ``addmm`` or oneDNN linear, same weights, same order: the
arithmetic floor the step cannot go below in fp32) and ``torch.profiler``'s self time by kind
of operator. The profiler adds a few microseconds to every operator, so its shares overstate the
small operators a little; the difference between the decode and the projection floor is the
honest overhead figure.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks._twins import Shapes, captioners, images
from omnifuse.heads import CaptionDecoder
from omnifuse.heads.decoding import DecodingOptions, decode
from omnifuse.layers.fused_step import FusedDecoder, fused_decoder

KINDS = {
    "projections (addmm/mm, oneDNN linear)": (
        "aten::addmm",
        "aten::mm",
        "mkldnn::_linear_pointwise",
        "mkldnn::_linear_pointwise.binary",
    ),
    "attention (SDPA; cross-attention bmm + softmax)": (
        "aten::bmm",
        "aten::baddbmm",
        "aten::_softmax",
        "aten::scaled_dot_product_attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_attention_math",
    ),
    "layer norms": ("aten::native_layer_norm",),
    "gelu": ("aten::gelu",),
    "copies (KV cache writes, bias broadcast)": ("aten::copy_",),
    "sampling and bookkeeping": (
        "aten::argmax",
        "aten::_log_softmax",
        "aten::gather",
        "aten::masked_fill_",
        "aten::eq",
        "aten::bitwise_or_",
        "aten::all",
        "aten::item",
        "aten::_local_scalar_dense",
        "aten::embedding",
        "aten::index_select",
    ),
}
"""Operator kinds reported, by ATen name; everything else (views, slices, allocation, adds) is
*other small operators*."""


PROFILED = 5
"""Decodes profiled per batch (one is noisy on shared cores)."""


def best_cpu_ms(fn: Callable[[], object], repeats: int = 7) -> float:
    """The fastest of ``repeats`` calls in CPU-milliseconds of this process."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1e3


def projections_only(step: FusedDecoder, batch: int, tokens: int) -> Callable[[], None]:
    """The fused step's projections for ``tokens`` steps, nothing else."""
    affines = [
        affine
        for block in step.blocks
        for affine in (block.qkv, block.attn_out, block.fc1, block.fc2)
        + (() if block.cross is None else (block.cross.query, block.cross.out))
    ] + [step.head]
    inputs = {a.weight.shape[0]: torch.randn(batch, a.weight.shape[0]) for a in affines}

    def run() -> None:
        with torch.inference_mode():
            for _ in range(tokens):
                for affine in affines:
                    affine(inputs[affine.weight.shape[0]])

    return run


def profile_batch(batch: int, tokens: int) -> list[str]:
    """Report lines for one batch size."""
    shapes = Shapes(batch=batch)
    pair = captioners(shapes)
    model = pair.model.eval()
    head = cast(CaptionDecoder, model.heads["caption"])
    head.eos_id = -1  # every row decodes `tokens` tokens, as in vs_hf
    with torch.no_grad():
        features = model.features(
            "caption", model.encode({"image": {"pixel_values": images(shapes)}})
        )
    options = DecodingOptions(max_length=tokens)
    total = best_cpu_ms(lambda: decode(head, features, options))
    floor = best_cpu_ms(projections_only(fused_decoder(head.decoder, head.lm_head), batch, tokens))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(PROFILED):
            decode(head, features, options)
    self_us: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = next(
            (k for k, names in KINDS.items() if event.key in names), "other small operators"
        )
        self_us[kind] += event.self_cpu_time_total
    profiled = sum(self_us.values())
    lines = [
        f"batch {batch}: {total:.1f} CPU-ms per decode of {tokens} tokens "
        f"({batch * tokens / total * 1e3:.0f} tokens per CPU-second); the projections alone "
        f"{floor:.1f} CPU-ms ({floor / total:.0%}); load average {os.getloadavg()[0]:.1f}",
        f"  profiled operators' self time: {profiled / 1e3 / PROFILED:.1f} CPU-ms per decode",
    ]
    for kind, us in sorted(self_us.items(), key=lambda item: -item[1]):
        lines.append(f"  {kind}: {us / profiled:.0%} of profiled operator time")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for batch in args.batches:
        print("\n".join(profile_batch(batch, args.tokens)), flush=True)


if __name__ == "__main__":
    main()
