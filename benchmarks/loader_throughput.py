"""Data-loader throughput (samples/s) for image+text, audio and video on shapesworld-like data,
against the training throughput of the same batches.

Run: ``python -m benchmarks.loader_throughput [--samples 192] [--config small] [--epochs 10]``.
It writes a small dataset (coloured shapes on noise with captions, a 16-kHz tone WAV as
ShapesWorld's speech is, and a moving-shape MP4 per sample) to a temporary directory, shards
it, and times full epochs of the real processors of the preset through
:func:`omnifuse.data.build_loader` from a local manifest and from shards, with 0 and 2 workers
(uncached: the rate of every epoch), and from the manifest with the media cache on
(``data.cache_mb``, the documented settings) epoch by epoch: the first epoch (cold cache, worker
start-up), the later ones (decoded media from memory; workers persist and keep their share),
and the run average over ``--epochs`` epochs. It then trains the preset's model on the same
batches (a classification head on the inputs: forward, backward and an AdamW step, the torch
threads of a training run) and reports the *headroom*: loader samples per CPU-second over
training samples per CPU-second. The goal is >= 5x. The table goes into ``docs/benchmarks.md``.
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
from omnifuse.data.decode import MEDIA_CACHE
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


def _audio(path: Path, rng: np.random.Generator, seconds: float = 2.0, rate: int = 16000) -> None:
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


def _live_children_cpu() -> float:
    """CPU-seconds of this process's running children (persistent DataLoader workers), from
    ``/proc`` (0 where it cannot be read)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").glob("*/children"):
        for pid in task.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it exited meanwhile: then it counts in RUSAGE_CHILDREN
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def cpu_seconds() -> float:
    """CPU time of this process, of its finished children and of its running ones (workers
    persist across epochs, so they are read while they live)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + _live_children_cpu()


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
    path: Path, config: str, modalities: tuple[str, ...], workers: int, batch: int, repeats: int
) -> Rate:
    """Uncached loading rate over ``repeats`` full epochs, after one warm-up epoch."""
    loader = build_loader(
        path, _processors(config, modalities), LABEL, _data(batch, workers), train=False
    )
    for _ in loader:  # warm-up: page cache, lazy initialisation, worker start-up
        pass
    rate = timed(lambda: sum(len(b["ids"]) for b in loader), repeats)
    loader.close()
    return rate


def cached_epochs(
    path: Path, config: str, modalities: tuple[str, ...], workers: int, batch: int, epochs: int
) -> list[Rate]:
    """The rate of each of ``epochs`` training-mode epochs with ``data.cache_mb`` on, from an
    empty cache: the first decodes (and starts the workers), the later ones read memory."""
    MEDIA_CACHE.clear()  # also what forked workers would inherit
    data = _data(batch, workers, CACHE_MB)
    loader = build_loader(path, _processors(config, modalities), LABEL, data, train=True)
    rates = [timed(lambda: sum(len(b["ids"]) for b in loader), 1) for _ in range(epochs)]
    loader.close()
    MEDIA_CACHE.clear()
    return rates


def run_average(first: Rate, later: Rate, epochs: int) -> Rate:
    """The rate over a run of ``epochs`` epochs: one at ``first``, the rest at ``later``
    (time per sample averaged, not rates)."""

    def mean(a: float, b: float) -> float:
        return epochs / (1 / a + (epochs - 1) / b)

    return Rate(mean(first.wall, later.wall), mean(first.cpu, later.cpu))


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
        "--epochs", type=int, default=10, help="Epochs of the run whose cached average is shown."
    )
    parser.add_argument(
        "--train-threads", type=int, default=1, help="Torch threads of the training rate."
    )
    args = parser.parse_args()
    # Workers run single-threaded (the DataLoader sets 1 thread each); so does the main process
    # here, so that 0 and 2 workers compare like with like on a busy machine.
    torch.set_num_threads(1)
    lines = _header(args)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_dataset(Path(tmp), args.samples)
        write_shards(manifest, Path(tmp) / "shards", shard_size=32)
        sources = {"manifest": manifest, "shards": Path(tmp) / "shards"}
        for name, modalities in SCENARIOS.items():
            train = training_rate(
                manifest, args.config, modalities, args.batch_size, args.repeats,
                args.train_threads,
            )  # fmt: skip
            rows = [
                (f"{source}, no cache", w, f"best of {args.repeats}", throughput(
                    sources[source], args.config, modalities, w, args.batch_size, args.repeats,
                ))
                for source in sources for w in args.workers
            ]  # fmt: skip
            for workers in args.workers:
                rows += _cached_rows(manifest, args, modalities, workers)
            for label, workers, epochs, rate in rows:
                lines.append(
                    f"| {name} | {label} | {workers} | {epochs} | {rate.wall:.0f} | "
                    f"{rate.cpu:.0f} | {train.wall:.1f} | {train.cpu:.1f} | "
                    f"{rate.cpu / train.cpu:.1f}x |"
                )
                print(lines[-1], os.getloadavg(), flush=True)
    load = os.getloadavg()
    lines += [
        "",
        f"Load average (1/5/15 min) when done: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
    ]
    write_section("loader_throughput", "\n".join(lines))


def _cached_rows(
    manifest: Path, args: argparse.Namespace, modalities: tuple[str, ...], workers: int
) -> list[tuple[str, int, str, Rate]]:
    """Rows of a cached training run: its first epoch, its later ones (the best of them) and
    the average over ``args.epochs`` epochs."""
    measured = min(args.epochs, args.repeats + 1)
    rates = cached_epochs(manifest, args.config, modalities, workers, args.batch_size, measured)
    later = Rate(max(r.wall for r in rates[1:]), max(r.cpu for r in rates[1:]))
    label = f"manifest, cache_mb={CACHE_MB}"
    return [
        (label, workers, "1 (cold)", rates[0]),
        (label, workers, f"2-{measured}, best", later),
        (label, workers, f"average of {args.epochs}", run_average(rates[0], later, args.epochs)),
    ]


def _header(args: argparse.Namespace) -> list[str]:
    return [
        "## Data loader throughput",
        "",
        f"`benchmarks/loader_throughput.py`: {args.samples} shapesworld-like samples (a 2-s "
        "16-kHz WAV, a 16-frame 64-px H.264 MP4, a 96-px PNG and a caption each), processors "
        f"of the `{args.config}` preset, batch {args.batch_size}; loading single-threaded per "
        "process. *no cache*: the best of "
        f"{args.repeats} epochs after a warm-up epoch (DataLoader workers persist across "
        f"epochs, so their start-up is in the warm-up). *cache_mb={CACHE_MB}* (the documented "
        "settings: decoded media kept in memory, a fixed share of the manifest per worker): one "
        "training-mode run from an empty cache, epoch by epoch: the 1st epoch decodes (and "
        "starts the workers), later epochs read memory, and the run average over "
        f"{args.epochs} epochs is {args.epochs} / (1 / first + {args.epochs - 1} / later) in "
        "CPU-seconds per sample. *Training* = the preset's model trained on the same batches, "
        "preloaded (a classification head on the inputs, forward + backward + AdamW, "
        f"{args.train_threads} torch thread(s)). Rates per wall-clock second and per "
        "CPU-second (the process and its workers, read from /proc while they run); *headroom* "
        "= loader samples per CPU-second over training samples per CPU-second, the "
        "contention-robust ratio (goal >= 5x: loading costs at most a fifth of the training "
        f"CPU time per sample). Loader and training were timed back to back in one process; "
        f"{machine()}.",
        "",
        "| inputs | source | workers | epochs | loader samples/s | loader samples/CPU-s | "
        "training samples/s | training samples/CPU-s | headroom (CPU) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]


if __name__ == "__main__":
    main()
