"""MP4/GIF writers: files decode with PyAV/Pillow to the right frame count, size and colours."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse.modalities.video.io import (
    denormalize,
    to_uint8_frames,
    write_clip,
    write_gif,
    write_mp4,
)
from video_helpers import moving_square


def decode_mp4(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def test_mp4_decodes_with_pyav(tmp_path: Path) -> None:
    frames = moving_square(frames=6, size=24)
    decoded = decode_mp4(write_mp4(tmp_path / "out" / "clip.mp4", frames, fps=6))
    assert decoded.shape == (6, 24, 24, 3)
    # Lossy yuv420p: flat areas survive, colours stay close on average.
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6


def test_mp4_pads_odd_sizes_for_yuv420p(tmp_path: Path) -> None:
    frames = np.full((3, 15, 17, 3), 128, dtype=np.uint8)
    decoded = decode_mp4(write_mp4(tmp_path / "odd.mp4", frames))
    assert decoded.shape == (3, 16, 18, 3)


def test_gif_decodes_with_pillow(tmp_path: Path) -> None:
    frames = moving_square(frames=5, size=16)
    path = write_gif(tmp_path / "clip.gif", frames, fps=10)
    with Image.open(path) as image:
        assert image.n_frames == 5 and image.size == (16, 16)
        assert image.info["duration"] == 100
        image.seek(4)
        last = np.asarray(image.convert("RGB"))
    assert np.abs(last.astype(int) - frames[4].astype(int)).max() <= 8  # palette rounding


def test_write_clip_dispatches_by_suffix(tmp_path: Path) -> None:
    clip = torch.rand(4, 3, 16, 16)
    assert write_clip(tmp_path / "a.MP4", clip).stat().st_size > 0
    with Image.open(write_clip(tmp_path / "a.gif", clip)) as image:
        assert image.n_frames == 4
    with pytest.raises(ValueError, match=r"suffix '.avi' is not one of .mp4, .gif"):
        write_clip(tmp_path / "a.avi", clip)
    with pytest.raises(ValueError, match=r"expected \[T, 3, H, W\]"):
        write_clip(tmp_path / "b.gif", torch.rand(4, 16, 16))


def test_denormalize_inverts_the_processor_and_clamps() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    unit = torch.rand(2, 3, 3, 8, 8)
    normalised = (unit - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(denormalize(normalised, mean, std), unit, atol=1e-6)
    assert denormalize(normalised * 10, mean, std).min() >= 0.0
    assert denormalize(normalised * 10, mean, std).max() <= 1.0
    frames = to_uint8_frames(unit[0])
    assert frames.dtype == np.uint8 and frames.shape == (3, 8, 8, 3)
    assert np.array_equal(frames[1, 2, 3], (unit[0, 1, :, 2, 3] * 255).round().byte().numpy())
