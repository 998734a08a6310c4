"""Data-loader throughput (samples/s) for image+text, audio and video on shapesworld-like data.

Run: ``python -m benchmarks.loader_throughput [--samples 192] [--config small]``. It writes a
small dataset (coloured shapes on noise with captions, a spoken-tone WAV and a moving-shape
MP4 per sample) to a temporary directory, shards it, and times full epochs of the real
processors of the preset through :func:`omnifuse.data.build_loader` from a local manifest and
from shards, with 0 and 2 workers. The table goes into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
from PIL import Image, ImageDraw

from benchmarks._report import machine, write_section
from omnifuse.config import load_config
from omnifuse.config.data import DataConfig
from omnifuse.data.collate import TargetField
from omnifuse.data.datamodule import build_loader, build_processors
from omnifuse.data.shards import write_shards

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


def throughput(
    path: Path, config: str, modalities: tuple[str, ...], workers: int, batch: int, repeats: int
) -> float:
    """Best samples/s of ``repeats`` full epochs, after one warm-up epoch.

    The best, not the mean: on a shared machine other processes only ever slow an epoch down.
    """
    processors = build_processors(load_config(config).model)
    chosen = {m: processors[m] for m in modalities}
    data = DataConfig(batch_size=batch, num_workers=workers)
    label = {"label": TargetField("label", "class", SHAPES)}
    loader = build_loader(path, chosen, label, data, train=False)
    for _ in loader:  # warm-up: page cache, lazy initialisation
        pass
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(len(b["ids"]) for b in loader)
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--config", default="small", help="Preset whose processors are used.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3, help="Timed epochs; the best counts.")
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
        f"single-threaded per process; {machine()}.",
        "",
        "| inputs | source | workers | samples/s |",
        "|---|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_dataset(Path(tmp), args.samples)
        write_shards(manifest, Path(tmp) / "shards", shard_size=32)
        sources = {"manifest": manifest, "shards": Path(tmp) / "shards"}
        for name, modalities in SCENARIOS.items():
            for source, path in sources.items():
                for workers in args.workers:
                    rate = throughput(
                        path, args.config, modalities, workers, args.batch_size, args.repeats
                    )
                    lines.append(f"| {name} | {source} | {workers} | {rate:.0f} |")
                    print(lines[-1], flush=True)
    write_section("loader_throughput", "\n".join(lines))


if __name__ == "__main__":
    main()
