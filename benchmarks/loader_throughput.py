"""Data-loader throughput (samples/s) for image+text, audio and video on shapesworld-like data,
against the training throughput of the same batches.

Run: ``python -m benchmarks.loader_throughput [--samples 192] [--config small]``. It writes a
small dataset (coloured shapes on noise with captions, a spoken-tone WAV and a moving-shape
MP4 per sample) to a temporary directory, shards it, and times full epochs of the real
processors of the preset through :func:`omnifuse.data.build_loader` from a local manifest and
from shards, with 0 and 2 workers, and from the manifest with the media cache on
(``data.cache_mb``). It then trains the preset's model on the same batches (a classification
head on the inputs: forward, backward and an AdamW step, the torch threads of a training run)
and reports the *headroom*: loader samples/s over training samples/s. The goal is >= 5x. The
table goes into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from benchmarks._report import machine, write_section
from omnifuse.config import load_config
from omnifuse.config.data import DataConfig
from omnifuse.data.collate import TargetField
from omnifuse.data.datamodule import build_loader, build_processors
from omnifuse.data.shards import write_shards
from omnifuse.models.builder import Processors, create_model
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.types import Batch

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220)}
SCENARIOS = {"image+text": ("image", "text"), "audio": ("audio",), "video": ("video",)}


def _draw(
    pen: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], rgb: tuple[int, ...]
) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        pen.ellipse(box, fill=rgb)
    elif shape == "square":
        pen.rectangle(box, fill=rgb)
    else:
        pen.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=rgb)


def _scene(rng: np.random.Generator, size: int, shape: str, colour: str, x: int) -> Image.Image:
    noise = rng.integers(90, 140, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    s = size // 3
    _draw(ImageDraw.Draw(image), shape, (x, size // 3, x + s, size // 3 + s), COLOURS[colour])
    return image


def _video(path: Path, rng: np.random.Generator, shape: str, colour: str, frames: int = 16) -> None:
    size = 64
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = _scene(rng, size, shape, colour, x=2 + i * 2)
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _audio(path: Path, rng: np.random.Generator, seconds: float = 2.0, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pitch = 200 + 300 * rng.random()
    wave = 0.3 * np.sin(2 * math.pi * pitch * t) * (1 + np.sin(2 * math.pi * 3 * t)) / 2
    sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")


def make_dataset(root: Path, samples: int, seed: int = 0) -> Path:
    """Write ``samples`` four-modality samples and their manifest; return the manifest path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(samples):
        shape, colour = SHAPES[i % 3], list(COLOURS)[(i // 3) % 3]
        _scene(rng, 96, shape, colour, x=int(rng.integers(0, 60))).save(root / f"{i}.png")
        _audio(root / f"{i}.wav", rng)
        _video(root / f"{i}.mp4", rng, shape, colour)
        caption = f"a {colour} {shape} on a grey noisy background, sample number {i}"
        rows.append({"id": str(i), "text": caption, "image": f"{i}.png", "audio": f"{i}.wav",
                     "video": f"{i}.mp4", "label": shape})  # fmt: skip
    manifest = root / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


CACHE_MB = 1024
"""``data.cache_mb`` of the cached rows (the demo's configs use 3072)."""


class Rate(NamedTuple):
    """Samples per wall-clock second and per CPU-second (this process and its workers)."""

    wall: float
    cpu: float


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers are joined at
    the end of each epoch, so an epoch's workers count once it is over)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(run: Callable[[], int], repeats: int) -> Rate:
    """Best wall-clock and best CPU rate of ``repeats`` calls of ``run`` (which returns the
    samples it handled). The best, not the mean: on a shared machine other processes only
    ever slow a run down."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        count = run()
        walls.append(count / (time.perf_counter() - wall))
        cpus.append(count / max(cpu_seconds() - cpu, 1e-9))
    return Rate(max(walls), max(cpus))


def throughput(
    path: Path,
    config: str,
    modalities: tuple[str, ...],
    workers: int,
    batch: int,
    repeats: int,
    cache_mb: int = 0,
) -> Rate:
    """Loading rate over ``repeats`` full epochs, after one warm-up epoch."""
    loader = build_loader(
        path, _processors(config, modalities), LABEL, _data(batch, workers, cache_mb), train=False
    )
    for _ in loader:  # warm-up: page cache, lazy initialisation (and the media cache, if on)
        pass
    return timed(lambda: sum(len(b["ids"]) for b in loader), repeats)


LABEL = {"label": TargetField("label", "class", SHAPES)}


def _processors(config: str, modalities: tuple[str, ...]) -> Processors:
    processors = build_processors(load_config(config).model)
    return {m: processors[m] for m in modalities}


def _data(batch: int, workers: int, cache_mb: int = 0) -> DataConfig:
    return DataConfig(batch_size=batch, num_workers=workers, cache_mb=cache_mb)


def training_rate(
    path: Path, config: str, modalities: tuple[str, ...], batch: int, repeats: int, threads: int
) -> Rate:
    """Rate of training the preset's model on one epoch of these batches, preloaded (so loading
    is not timed): a classification head reading the inputs (the fusion for several
    modalities), cross-entropy on the label, backward, AdamW step; ``threads`` torch threads."""
    source = "fused" if len(modalities) > 1 else modalities[0]
    head = (
        f"model.heads.bench={{type: classification, num_classes: {len(SHAPES)}, source: {source}}}"
    )
    model, _ = create_model(config, [head])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = build_loader(
        path, _processors(config, modalities), LABEL, _data(batch, 0), train=False
    )
    batches = list(loader)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _train_epoch(model, optimizer, batches[:2])  # warm-up: allocations
        return timed(lambda: _train_epoch(model, optimizer, batches), repeats)
    finally:
        torch.set_num_threads(previous)


def _train_epoch(
    model: MultimodalModel, optimizer: torch.optim.Optimizer, batches: list[Batch]
) -> int:
    """One optimiser step per batch; the number of samples trained."""
    count = 0
    for batch in batches:
        logits = model.run_head("bench", batch["inputs"])
        loss = F.cross_entropy(logits, batch["targets"]["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(batch["ids"])
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--config", default="small", help="Preset whose processors are used.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3, help="Timed epochs; the best counts.")
    parser.add_argument(
        "--train-threads", type=int, default=1, help="Torch threads of the training rate."
    )
    args = parser.parse_args()
    # Workers run single-threaded (the DataLoader sets 1 thread each); so does the main process
    # here, so that 0 and 2 workers compare like with like on a busy machine.
    torch.set_num_threads(1)
    lines = [
        "## Data loader throughput",
        "",
        f"`benchmarks/loader_throughput.py`: {args.samples} shapesworld-like samples, "
        f"processors of the `{args.config}` preset, batch {args.batch_size}, best of "
        f"{args.repeats} epochs after a warm-up epoch (worker start-up included); loading "
        f"single-threaded per process; *cache* = manifest with `data.cache_mb={CACHE_MB}` "
        "(epochs after the first read the decoded media from memory). *Training* = the preset's "
        "model trained on the same batches, preloaded (a classification head on the inputs, "
        f"forward + backward + AdamW, {args.train_threads} torch thread(s)). Rates per "
        "wall-clock second and per CPU-second (the process and its workers); *headroom* = "
        "loader samples per CPU-second over training samples per CPU-second, the "
        "contention-robust ratio (goal >= 5x: loading costs at most a sixth of the training "
        f"CPU time per sample). Loader and training were timed back to back in one process; "
        f"{machine()}.",
        "",
        "| inputs | source | workers | loader samples/s | loader samples/CPU-s | "
        "training samples/s | training samples/CPU-s | headroom (CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_dataset(Path(tmp), args.samples)
        write_shards(manifest, Path(tmp) / "shards", shard_size=32)
        sources = {"manifest": manifest, "shards": Path(tmp) / "shards"}
        for name, modalities in SCENARIOS.items():
            train = training_rate(
                manifest, args.config, modalities, args.batch_size, args.repeats,
                args.train_threads,
            )  # fmt: skip
            runs = [(s, w, 0) for s in sources for w in args.workers] + [("manifest", 0, CACHE_MB)]
            for source, workers, cache_mb in runs:
                rate = throughput(
                    sources[source], args.config, modalities, workers, args.batch_size,
                    args.repeats, cache_mb,
                )  # fmt: skip
                label = "cache" if cache_mb else source
                lines.append(
                    f"| {name} | {label} | {workers} | {rate.wall:.0f} | {rate.cpu:.0f} | "
                    f"{train.wall:.1f} | {train.cpu:.1f} | {rate.cpu / train.cpu:.1f}x |"
                )
                print(lines[-1], os.getloadavg(), flush=True)
    load = os.getloadavg()
    lines += [
        "",
        f"Load average (1/5/15 min) when done: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
    ]
    write_section("loader_throughput", "\n".join(lines))


if __name__ == "__main__":
    main()
