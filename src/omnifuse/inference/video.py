"""Generated clips: shape checks and writing MP4/GIF files (via ``omnifuse.modalities.video.io``).

A video generator head is duck-typed: any head with ``generate(features, **options)`` returning
frames ``[B, T, 3, H, W]`` in ``[0, 1]`` (and no text-decoder ``step``) is served.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from omnifuse.inference.options import InferenceError

VIDEO_FORMATS = ("mp4", "gif")


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validated, lower-cased formats (no duplicates, at least one).

    Raises:
        InferenceError: an unknown format (the message lists the valid ones).
    """
    chosen = tuple(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    bad = [f for f in chosen if f not in VIDEO_FORMATS]
    if bad or not chosen:
        raise InferenceError(
            f"video formats {list(formats)}: valid choices are {', '.join(VIDEO_FORMATS)}"
        )
    return chosen


def check_frames(frames: Tensor, batch: int, head: str) -> Tensor:
    """``frames`` if it is ``[batch, T, 3, H, W]`` with values in ``[0, 1]``.

    Raises:
        InferenceError: another shape or range (a head breaking the generator contract).
    """
    shape = tuple(frames.shape)
    if frames.ndim != 5 or shape[0] != batch or shape[2] != 3:
        raise InferenceError(
            f"head {head!r} generated frames of shape {shape}; expected [{batch}, T, 3, H, W]"
        )
    low, high = float(frames.min()), float(frames.max())
    if low < 0.0 or high > 1.0:
        raise InferenceError(
            f"head {head!r} generated values in [{low:.3g}, {high:.3g}]; expected [0, 1]"
        )
    return frames


def write_clips(
    frames: Tensor, out_dir: Path, formats: Sequence[str], fps: int = 8
) -> list[list[Path]]:
    """Write clip ``i`` of ``frames`` ``[B, T, 3, H, W]`` as ``out_dir/video_{i:03d}.{fmt}``.

    Returns:
        Per clip, its paths in ``formats`` order.

    Raises:
        InferenceError: the video writer (``omnifuse.modalities.video.io``) is not installed.
    """
    try:
        writer = importlib.import_module("omnifuse.modalities.video.io")
    except ImportError as err:
        raise InferenceError(f"writing clips needs omnifuse.modalities.video.io ({err})") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, clip in enumerate(frames.detach().cpu()):
        paths = [out_dir / f"video_{index:03d}.{fmt}" for fmt in formats]
        written.append([Path(writer.write_clip(path, clip, fps)) for path in paths])
    return written
