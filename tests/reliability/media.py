"""Writers of good and broken media files for the bad-input corpus (no pytest dependency)."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image


def png(path: Path, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> Path:
    """A real image of ``size`` (width, height) in PIL ``mode``, format from the suffix."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        grey = (rng.integers(0, 65535, size=(size[1], size[0]))).astype(np.uint16)
        image = Image.fromarray(grey)
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` share of the bytes of ``source``."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def animated_gif(path: Path, frames: int = 3) -> Path:
    images = [Image.new("RGB", (24, 24), (40 * i, 80, 160)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR declares ``width x height`` RGB pixels but holds almost no data (a
    decompression bomb's header: decoding it would allocate ``3 * width * height`` bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
    path.write_bytes(data + _chunk(b"IEND", b""))
    return path


def wav(
    path: Path,
    seconds: float = 0.5,
    rate: int = 16000,
    channels: int = 1,
    subtype: str = "PCM_16",
    fmt: str | None = None,
    fill: float | None = None,
) -> Path:
    """A tone of ``seconds`` at ``rate`` Hz; ``fill`` sets every sample (NaN, inf) instead."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * math.pi * 440.0 * t)
    samples = np.repeat(wave[:, None], channels, axis=1).astype(np.float32)
    if fill is not None:
        samples[:] = fill
    sf.write(path, samples, rate, subtype=subtype, format=fmt)
    return path


def mp4(
    path: Path, frames: int = 6, size: tuple[int, int] = (32, 32), codec: str = "libx264"
) -> Path:
    """A real video of ``frames`` frames of ``size`` (width, height); 0 frames gives a
    container with a video stream and no frame."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        container.start_encoding()  # writes the header even when no frame follows
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 20 * i % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def audio_only_mp4(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An MP4 holding one AAC audio stream and no video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.zeros((1, int(seconds * rate)), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
