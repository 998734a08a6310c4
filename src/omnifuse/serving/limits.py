"""Request limits and upload decoding: every oversize or unreadable input becomes a clear 4xx.

Uploads are decoded here, before they reach the batcher, so a bad file fails its own request
(naming the limit or the reason) and never the batch it would have joined. Images and audio are
decoded in memory; a video is written to a temporary file with a name the server chooses (the
client's filename is never used as a path), because the video processor reads paths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class Limits:
    """What one request may carry (every field is a limit named in its 4xx answer).

    Attributes:
        max_request_bytes: the whole request body.
        max_upload_bytes: one file (after base64 decoding).
        max_image_pixels: width x height of one image (checked before decoding: bombs).
        max_audio_seconds: one audio clip.
        max_video_frames: frames of one video.
        max_video_seconds: duration of one video.
        max_text_chars: one text.
        max_batch: samples in one request.
        timeout_s: seconds a request may wait for its result (then 504).
    """

    max_request_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_audio_seconds: float = 60.0
    max_video_frames: int = 600
    max_video_seconds: float = 60.0
    max_text_chars: int = 2000
    max_batch: int = 32
    timeout_s: float = 30.0


class LimitExceeded(Exception):
    """A request over one of :class:`Limits` (HTTP 413)."""

    def __init__(self, limit: str, value: float | str, allowed: float, what: str) -> None:
        shown = f"{value:g}" if isinstance(value, int | float) else value
        super().__init__(f"{what} is {shown}, over the limit {limit}={allowed:g}")
        self.limit = limit


class BadInput(Exception):
    """An input that cannot be read (HTTP 422); the message names the input and the reason."""


def check(limit: str, value: float, allowed: float, what: str) -> None:
    """Raise :class:`LimitExceeded` when ``value > allowed``."""
    if value > allowed:
        raise LimitExceeded(limit, value, allowed, what)


def check_upload(data: bytes, name: str, limits: Limits) -> None:
    """An upload must be non-empty and at most ``max_upload_bytes``."""
    if not data:
        raise BadInput(f"{name}: empty file")
    check("max_upload_bytes", len(data), limits.max_upload_bytes, f"{name} size in bytes")


def decode_image(data: bytes, name: str, limits: Limits) -> Image.Image:
    """Image bytes -> a fully decoded PIL image, its pixel count checked from the header first."""
    check_upload(data, name, limits)
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        check("max_image_pixels", width * height, limits.max_image_pixels, f"{name} pixels")
        image.load()
    except LimitExceeded:
        raise
    except Image.DecompressionBombError as err:  # PIL's own check, at twice its pixel limit
        raise LimitExceeded(
            "max_image_pixels", "far too many", limits.max_image_pixels, f"{name} pixels"
        ) from err
    except UnidentifiedImageError:
        raise BadInput(f"{name}: not a readable image (unknown or unsupported format)") from None
    # PIL reports truncated or corrupt data as OSError, SyntaxError or ValueError by codec.
    except (OSError, SyntaxError, ValueError) as err:
        raise BadInput(f"{name}: cannot decode image: {err}") from None
    return image


def decode_audio(data: bytes, name: str, limits: Limits) -> tuple[np.ndarray[Any, Any], int]:
    """Audio bytes (WAV, FLAC, OGG) -> ``(samples [S, C] float32, rate)``, duration checked
    from the header before the samples are read."""
    check_upload(data, name, limits)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames = int(f.samplerate), int(f.frames)
            seconds = frames / rate if rate > 0 else 0.0
            check("max_audio_seconds", seconds, limits.max_audio_seconds, f"{name} seconds")
            samples = f.read(dtype="float32", always_2d=True)
    except LimitExceeded:
        raise
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as err:
        raise BadInput(f"{name}: cannot decode audio ({err})") from None
    if samples.shape[0] == 0:
        raise BadInput(f"{name}: audio has no samples")
    return samples, rate


def save_video(data: bytes, name: str, limits: Limits, folder: Path, index: int) -> Path:
    """Video bytes -> a file in ``folder`` (server-chosen name), frames and seconds checked."""
    check_upload(data, name, limits)
    path = folder / f"upload_{index:03d}{_suffix(data)}"
    path.write_bytes(data)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInput(f"{name}: no video stream in file")
            stream = container.streams.video[0]
            frames, seconds = _frames_and_seconds(container, stream)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise BadInput(f"{name}: cannot open video: {err}") from None
    check("max_video_frames", frames, limits.max_video_frames, f"{name} frames")
    check("max_video_seconds", seconds, limits.max_video_seconds, f"{name} seconds")
    if frames == 0:
        raise BadInput(f"{name}: video has no frames")
    return path


def _frames_and_seconds(container: Any, stream: Any) -> tuple[int, float]:
    """Frame count and duration from metadata, else by demuxing (WebM carries no count)."""
    frames = int(stream.frames or 0)
    if frames == 0:
        frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
    seconds = float(container.duration or 0) / 1_000_000  # av.time_base is microseconds
    if seconds == 0.0 and stream.average_rate:
        seconds = frames / float(stream.average_rate)
    return frames, seconds


def _suffix(data: bytes) -> str:
    """A file suffix from the magic bytes (FFmpeg probes content anyway; this is for humans)."""
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    if data[:3] == b"GIF":
        return ".gif"
    return ".bin"


def check_text(text: str, name: str, limits: Limits) -> str:
    """A text must be at most ``max_text_chars`` characters."""
    check("max_text_chars", len(text), limits.max_text_chars, f"{name} length in characters")
    return text
