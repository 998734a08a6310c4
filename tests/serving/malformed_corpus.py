"""A corpus of malformed requests, each with the 4xx it must get (tests and the load benchmark).

Every case is ``(name, method, path, httpx keyword arguments, expected status)``; the server
runs with the default :class:`~omnifuse.serving.Limits` over the tiny run (no video encoder,
no video generator).
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
from PIL import Image

from omnifuse.serving import Limits


class Case(NamedTuple):
    name: str
    method: str
    path: str
    kwargs: dict[str, Any]
    status: int


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (a decompression bomb's header), no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="WAV")
    return buf.getvalue()


def corpus(limits: Limits | None = None) -> list[Case]:
    """The malformed requests and their expected statuses."""
    limits = limits or Limits()
    good = b64(png())
    post: Callable[[str, dict[str, Any], int], Case] = lambda name, kw, status: Case(  # noqa: E731
        name, "POST", "/v1/classify", kw, status
    )
    cases = [
        post("truncated PNG", {"json": {"image": [b64(png()[:40])]}}, 422),
        post("PNG signature only", {"json": {"image": [b64(png()[:8])]}}, 422),
        post("random bytes as image", {"json": {"image": [b64(bytes(range(256)))]}}, 422),
        post("empty file", {"json": {"image": [""]}}, 422),
        post("bad base64", {"json": {"image": ["not*base64!"]}}, 422),
        post("data URL without base64", {"json": {"image": ["data:image/png,abc"]}}, 422),
        post("http URL instead of bytes", {"json": {"image": ["https://example.com/a.png"]}}, 422),
        post("image is a number", {"json": {"image": [5]}}, 422),
        post("image is not a list", {"json": {"image": good}}, 422),
        Case("text is a list of numbers", "POST", "/v1/fill-mask", {"json": {"text": [1, 2]}}, 422),
        post("missing fields (empty object)", {"json": {}}, 422),
        post("invalid JSON", {"content": b"{image: [", "headers": JSON}, 422),
        post("JSON array body", {"json": [good]}, 422),
        post("unknown field", {"json": {"image": [good], "picture": [good]}}, 422),
        post("lengths differ", {"json": {"task": "itm", "image": [good], "text": ["a", "b"]}}, 422),
        post("empty list", {"json": {"image": []}}, 422),
        post("options of the wrong type", {"json": {"image": [good], "options": "beam"}}, 422),
        post("beam_size 0", {"json": {"image": [good], "options": {"beam_size": 0}}}, 422),
        post(
            "wrong content type",
            {"content": b"hello", "headers": {"content-type": "text/plain"}},
            422,
        ),
        post("garbage multipart", {"content": b"--x\r\nnot a part", "headers": FORM}, 422),
        post("video for a run without a video encoder", {"json": {"video": [good]}}, 422),
        Case(
            "truncated WAV",
            "POST",
            "/v1/transcribe",
            {"json": {"audio": [b64(wav(1.0)[:30])]}},
            422,
        ),
        post(
            "oversize body",
            {"content": b"x" * (limits.max_request_bytes + 1), "headers": JSON},
            413,
        ),
        post(
            "oversize upload",
            {"files": {"image": ("a.png", b"\x89PNG" + b"\0" * limits.max_upload_bytes)}},
            413,
        ),
        post(
            "decompression bomb (50k x 50k header)",
            {"json": {"image": [b64(png_header(50_000, 50_000))]}},
            413,
        ),
        Case(
            "text too long",
            "POST",
            "/v1/fill-mask",
            {"json": {"text": ["a" * (limits.max_text_chars + 1)]}},
            413,
        ),
        post("batch too large", {"json": {"image": [good] * (limits.max_batch + 1)}}, 413),
        post("unknown task", {"json": {"task": "nope", "image": [good]}}, 404),
        Case(
            "audio too long",
            "POST",
            "/v1/transcribe",
            {"json": {"audio": [b64(wav(limits.max_audio_seconds + 1))]}},
            413,
        ),
        Case(
            "generate-video without a video task",
            "POST",
            "/v1/generate-video",
            {"json": {"text": ["x"]}},
            404,
        ),
        Case("GET on a POST endpoint", "GET", "/v1/classify", {}, 405),
        Case(
            "transcription without file",
            "POST",
            "/v1/audio/transcriptions",
            {"files": {"model": (None, "x")}},
            422,
        ),
        Case(
            "transcription of a PNG",
            "POST",
            "/v1/audio/transcriptions",
            {"files": {"file": ("a.wav", png())}},
            422,
        ),
        Case(
            "chat without messages", "POST", "/v1/chat/completions", {"json": {"messages": []}}, 422
        ),
        Case(
            "chat with a bad role",
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [{"role": "robot", "content": "x"}]}},
            422,
        ),
        Case(
            "chat with a remote image URL",
            "POST",
            "/v1/chat/completions",
            {
                "json": {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image_url", "image_url": {"url": "http://x/a.png"}}
                            ],
                        }
                    ]
                }
            },
            422,
        ),
        Case(
            "chat with an image_url part lacking image_url",
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}},
            422,
        ),
    ]
    return cases


JSON = {"content-type": "application/json"}
FORM = {"content-type": "multipart/form-data; boundary=x"}
