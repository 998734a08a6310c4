"""Generated clips to files: un-normalisation, uint8 frames, MP4 (PyAV, libx264) and GIF (Pillow).

Model outputs live in the video processor's normalised space (``(x - mean) / std`` per channel);
:func:`denormalize` maps them back to ``[0, 1]`` with the processor's own ``mean``/``std`` so a
written clip looks like the input clips did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor

Frames = npt.NDArray[np.uint8]
"""uint8 ``[T, H, W, 3]`` RGB frames."""

VIDEO_SUFFIXES = (".mp4", ".gif")


def denormalize(pixel_values: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Invert the processor's normalisation and clamp to ``[0, 1]``.

    Args:
        pixel_values: ``[..., 3, H, W]`` normalised frames (e.g. ``[B, T, 3, H, W]``).
        mean: per-channel mean the processor subtracted.
        std: per-channel std the processor divided by.

    Returns:
        Same shape, float in ``[0, 1]``.
    """
    shape = (3, 1, 1)
    m = torch.tensor(mean, dtype=pixel_values.dtype, device=pixel_values.device).view(shape)
    s = torch.tensor(std, dtype=pixel_values.dtype, device=pixel_values.device).view(shape)
    return (pixel_values * s + m).clamp(0.0, 1.0)


def to_uint8_frames(clip: Tensor) -> Frames:
    """``[T, 3, H, W]`` float in ``[0, 1]`` -> uint8 ``[T, H, W, 3]`` (rounded)."""
    if clip.ndim != 4 or clip.shape[1] != 3:
        raise ValueError(f"clip has shape {tuple(clip.shape)}; expected [T, 3, H, W]")
    scaled = (clip.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def _check_frames(frames: Frames) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(
            f"frames have shape {frames.shape} and dtype {frames.dtype}; expected uint8 "
            "[T, H, W, 3] with T >= 1"
        )


def _even(frames: Frames) -> Frames:
    """Pad the last row/column by replication so H and W are even (yuv420p halves both)."""
    height, width = frames.shape[1:3]
    pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
    return frames if pad[1][1] == pad[2][1] == 0 else np.pad(frames, pad, mode="edge")


def write_mp4(path: str | Path, frames: Frames, fps: int = 8, crf: int = 18) -> Path:
    """Write frames as an H.264 (libx264, yuv420p) MP4 that common players decode.

    Args:
        path: output file.
        frames: uint8 ``[T, H, W, 3]``; an odd height/width is padded by one replicated pixel.
        fps: frames per second.
        crf: libx264 constant rate factor (0 = lossless, 18 = visually lossless, 51 = worst).

    Returns:
        The path written.
    """
    _check_frames(frames)
    frames, path = _even(frames), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream: Any = container.add_stream("libx264", rate=fps, options={"crf": str(crf)})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return path


def write_gif(path: str | Path, frames: Frames, fps: int = 8, loop: int = 0) -> Path:
    """Write frames as an animated GIF (Pillow, adaptive palette per frame).

    Args:
        path: output file.
        frames: uint8 ``[T, H, W, 3]``.
        fps: frames per second (GIF stores whole milliseconds per frame).
        loop: times to loop; 0 loops forever.

    Returns:
        The path written.
    """
    _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=loop,
        disposal=1,  # later frames replace earlier ones whole
        optimize=False,
    )
    return path


def write_clip(path: str | Path, clip: Tensor, fps: int = 8) -> Path:
    """Write one ``[T, 3, H, W]`` clip in ``[0, 1]`` as MP4 or GIF, chosen by the suffix.

    Raises:
        ValueError: an unsupported suffix (the message lists the valid ones).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(
            f"cannot write {str(path)!r}: suffix {suffix!r} is not one of "
            f"{', '.join(VIDEO_SUFFIXES)}"
        )
    frames = to_uint8_frames(clip)
    return write_mp4(path, frames, fps) if suffix == ".mp4" else write_gif(path, frames, fps)
