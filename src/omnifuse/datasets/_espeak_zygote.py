"""A tiny espeak-ng server process: one forked child per utterance, so each starts from one state.

Run as a script (``python _espeak_zygote.py LIBRARY DATA_DIR``), never imported by the package:
it deliberately imports nothing but the standard library so that it stays small and forking it
costs about a millisecond (forking a full worker process costs ~15 ms).

Protocol on stdin/stdout, one request at a time:
    request:  4-byte little-endian length, then that many bytes of UTF-8 JSON
              ``{"text": str, "voice": str, "rate": int, "pitch": int, "seed": int}``
    response: ``<i`` status (0 = ok, > 0 = espeak error, -1 = the child crashed),
              ``<i`` sample rate, ``<I`` byte count, then int16 little-endian samples.
The server exits when stdin closes.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
from typing import Any, BinaryIO

HEADER = struct.Struct("<iiI")
LENGTH = struct.Struct("<I")
_SYNCHRONOUS, _RATE, _PITCH, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 3, 1, 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Synth:
    def __init__(self, library: str, data: str) -> None:
        self.lib: Any = ctypes.CDLL(library)
        self.rate = int(self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data.encode(), 0))
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C only holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, count: int, _events: Any) -> int:
        if count > 0:
            self.chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    def speak(self, request: dict[str, Any]) -> tuple[int, bytes]:
        """Synthesise one request in this process; return (espeak status, samples)."""
        self.lib.espeak_ng_SetRandSeed(int(request["seed"]))
        status = int(self.lib.espeak_SetVoiceByName(str(request["voice"]).encode()))
        if status != 0:
            return status, b""
        self.lib.espeak_SetParameter(_RATE, int(request["rate"]), 0)
        self.lib.espeak_SetParameter(_PITCH, int(request["pitch"]), 0)
        text = str(request["text"]).encode()
        flags = _CHARS_UTF8
        status = int(
            self.lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        )
        self.lib.espeak_Synchronize()
        return status, b"".join(self.chunks)


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def _serve_one(synth: _Synth, request: dict[str, Any], out: BinaryIO) -> None:
    out.flush()
    pid = os.fork()
    if pid == 0:  # child: answer, then leave without any Python cleanup
        code = 1
        try:
            status, samples = synth.speak(request)
            out.write(HEADER.pack(status, synth.rate, len(samples)) + samples)
            out.flush()
            code = 0
        finally:
            os._exit(code)
    _, exit_status = os.waitpid(pid, 0)
    if exit_status != 0:
        out.write(HEADER.pack(-1, synth.rate, 0))
        out.flush()


def main(argv: list[str]) -> int:
    """Serve requests until stdin closes."""
    synth = _Synth(argv[1], argv[2])
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (head := _read_exact(stdin, LENGTH.size)) is not None:
        body = _read_exact(stdin, LENGTH.unpack(head)[0])
        if body is None:
            break
        _serve_one(synth, json.loads(body), stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
