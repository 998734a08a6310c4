"""Parameter counts and forward latency of every preset on this machine (CPU, fp32).

Run: ``python benchmarks/presets.py`` (or ``make bench``). Inputs are synthetic tensors shaped
like each preset's processor output, so only the model is timed.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks._report import machine, write_section
from omnifuse import create_model, list_models
from omnifuse.models import MultimodalModel

BATCH = 8


def synthetic_batch(model: MultimodalModel) -> dict[str, dict[str, torch.Tensor]]:
    """Processor-shaped inputs for every configured modality."""
    cfg = model.config.encoders
    batch: dict[str, dict[str, torch.Tensor]] = {}
    if cfg.text is not None:
        length = 32
        batch["text"] = {
            "input_ids": torch.randint(5, 200, (BATCH, length)),
            "attention_mask": torch.ones(BATCH, length, dtype=torch.bool),
        }
    if cfg.image is not None:
        size = cfg.image.processor.image_size
        batch["image"] = {"pixel_values": torch.randn(BATCH, 3, size, size)}
    if cfg.audio is not None:
        p = cfg.audio.processor
        frames = int(min(p.max_seconds, 3.0) * p.sample_rate / p.hop_length)
        batch["audio"] = {
            "features": torch.randn(BATCH, frames, p.n_mels),
            "mask": torch.ones(BATCH, frames, dtype=torch.bool),
        }
    if cfg.video is not None:
        v = cfg.video.processor
        batch["video"] = {
            "pixel_values": torch.randn(BATCH, v.num_frames, 3, v.image_size, v.image_size),
            "frame_mask": torch.ones(BATCH, v.num_frames, dtype=torch.bool),
        }
    return batch


def time_forward(model: MultimodalModel, repeats: int = 5) -> float:
    """Median milliseconds per forward pass (no grad, after one warm-up)."""
    batch = synthetic_batch(model)
    model.eval()
    times = []
    with torch.no_grad():
        model(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    rows = []
    for name in list_models():
        model, _ = create_model(name)
        ms = time_forward(model, repeats=3 if name == "base" else 5)
        modalities = "+".join(model.modalities)
        fusion = model.config.fusion.type
        params = f"{model.num_parameters() / 1e6:.2f} M"
        rows.append(f"| {name} | {modalities} | {fusion} | {params} | {ms:.1f} |")
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Presets: parameters and forward latency",
            "",
            f"Batch of {BATCH} synthetic processor-shaped inputs (text 32 tokens, audio ≤ 3 s), "
            f"fp32, no grad, median of repeated runs. Machine: {machine()}.",
            "",
            "| preset | modalities | fusion | parameters | forward ms / batch |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    write_section("presets", body)


if __name__ == "__main__":
    main()
