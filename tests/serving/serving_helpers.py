"""Helpers of the serving tests: media bytes and a fake backend."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from PIL import Image

from omnifuse.serving import TaskInfo
from omnifuse.serving.inputs import MODALITIES


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


def mp4_bytes(frames: int, fps: int = 8, size: int = 16) -> bytes:
    """An H.264 MP4 of ``frames`` grey frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            array = np.full((size, size, 3), 10 * i % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


class FakeBackend:
    """A :class:`~omnifuse.serving.Backend` that echoes what it got, counts its forward passes
    and can be slow (for batching, timeout and shutdown tests)."""

    name = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []  # samples per forward pass
        self.started = threading.Event()  # set when a forward pass begins

    def describe(self) -> list[TaskInfo]:
        return [TaskInfo("echo", "fake", ("classify",), MODALITIES, ())]

    def predict(
        self, task: str, raws: Mapping[str, Sequence[Any]], options: Any, out_dir: Path | None
    ) -> list[dict[str, Any]]:
        self.started.set()
        time.sleep(self.delay)
        size = len(next(iter(raws.values())))
        self.calls.append(size)
        return [
            {"text": str(raws["text"][i]) if "text" in raws else "", "modalities": sorted(raws)}
            for i in range(size)
        ]
