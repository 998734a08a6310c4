"""Generated clips as files: MP4/GIF written with :mod:`omnifuse.modalities.video.io`.

The frames come from a video task type's ``predict`` (``[T, 3, H, W]`` in ``[0, 1]`` per
sample, checked by the task); this module only names and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnifuse.errors import InferenceError
from omnifuse.modalities.video.io import write_clip

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


def write_clips(
    frames: Tensor, out_dir: Path, formats: Sequence[str], fps: int = 8
) -> list[list[Path]]:
    """Write clip ``i`` of ``frames`` ``[B, T, 3, H, W]`` as ``out_dir/video_{i:03d}.{fmt}``.

    Returns:
        Per clip, its paths in ``formats`` order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, clip in enumerate(frames.detach().cpu()):
        paths = [out_dir / f"video_{index:03d}.{fmt}" for fmt in formats]
        written.append([Path(write_clip(path, clip, fps)) for path in paths])
    return written


def clip_files(
    task: str,
    predictions: Sequence[Mapping[str, Any]],
    out_dir: str | Path | None,
    formats: Sequence[str] = ("mp4", "gif"),
    fps: int = 8,
) -> list[dict[str, Any]]:
    """Write every prediction's ``frames`` ``[T, 3, H, W]`` as clips; per sample its ``files``.

    Raises:
        InferenceError: no ``out_dir``, or an unknown format.
    """
    if out_dir is None:
        raise InferenceError(f"task {task!r} writes clips; pass an output directory (--out)")
    clips = torch.stack([p["frames"] for p in predictions])
    paths = write_clips(clips, Path(out_dir), check_formats(formats), fps)
    return [{"files": [str(p) for p in row]} for row in paths]
