"""Property tests: whatever size, mode, sample rate, length or dtype a processor is given, it
returns tensors of the documented shape and range, or raises ``MediaError``; never another
exception. Examples are few and fixed (these run in CI) and deadlines off (the CPUs are shared);
``OMNIFUSE_PROPERTY_EXAMPLES=500`` explores more, with random seeds."""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from omnifuse.config.audio import AudioProcessorConfig
from omnifuse.config.image import IMAGENET_MEAN, IMAGENET_STD, ImageProcessorConfig
from omnifuse.config.text import TextTransformerConfig
from omnifuse.config.video import VideoProcessorConfig
from omnifuse.modalities.audio import AudioProcessor
from omnifuse.modalities.base import MediaError
from omnifuse.modalities.image import ImageProcessor
from omnifuse.modalities.text.processor import build_text_processor
from omnifuse.modalities.video import VideoProcessor

EXPLORE = int(os.environ.get("OMNIFUSE_PROPERTY_EXAMPLES", "0"))
FEW = settings(
    max_examples=EXPLORE or 25,
    deadline=None,
    derandomize=not EXPLORE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIZE = 16
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64, np.bool_]


def _pixel_bounds() -> tuple[float, float]:
    lows = [(0.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    highs = [(1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    return min(lows) - 1e-4, max(highs) + 1e-4


def _check_image(pixels: torch.Tensor) -> None:
    low, high = _pixel_bounds()
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert bool(pixels.isfinite().all())
    assert low <= float(pixels.min()) <= float(pixels.max()) <= high


def _load_or_media_error(load: Any, raw: Any) -> Any:
    """``load(raw)``, or None when it raised MediaError; any other exception fails the test."""
    try:
        return load(raw)
    except MediaError as err:
        assert err.source and err.reason
        return None


@FEW
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(FORMATS),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_image_files(width: int, height: int, mode: str, fmt: str, cut: float | None) -> None:
    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # PIL cannot write this mode in this format
    data = buffer.getvalue()
    data = data if cut is None else data[: int(len(data) * cut)]
    processor = ImageProcessor(ImageProcessorConfig(image_size=SIZE)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{fmt.lower()}"
        path.write_bytes(data)
        pixels = _load_or_media_error(processor.load, path)
    if pixels is not None:
        _check_image(pixels)
    elif cut is None:
        pytest.fail(f"an intact {mode} {fmt} {width}x{height} was refused")


@FEW
@given(
    array=arrays(
        st.sampled_from(DTYPES),
        st.tuples(st.integers(0, 40), st.integers(0, 40)).flatmap(
            lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 2), (*hw, 3), (*hw, 4), (*hw, 3, 1)])
        ),
    )
)
def test_image_arrays(array: np.ndarray[Any, Any]) -> None:
    pixels = _load_or_media_error(ImageProcessor(ImageProcessorConfig(image_size=SIZE)).load, array)
    if pixels is not None:
        _check_image(pixels)


AUDIO = AudioProcessorConfig(n_mels=16, max_seconds=1.0)


def _check_audio(features: torch.Tensor | None) -> None:
    if features is None:
        return
    assert features.dim() == 2 and features.shape[1] == AUDIO.n_mels
    assert 1 <= features.shape[0] <= AUDIO.max_frames and bool(features.isfinite().all())


@FEW
@given(
    dtype=st.sampled_from(DTYPES[:-1]),
    length=st.integers(0, 30_000),
    channels=st.integers(1, 4),
    rate=st.one_of(st.sampled_from([1, 8000, 16000, 22050, 96000]), st.integers(-5, 10**7)),
    special=st.sampled_from([None, math.nan, math.inf]),
)
def test_audio_arrays(
    dtype: Any, length: int, channels: int, rate: int, special: float | None
) -> None:
    rng = np.random.default_rng(length)
    samples = (rng.standard_normal((length, channels)) * 0.3).astype(np.float64)
    if special is not None and length:
        samples[length // 2] = special
    if np.issubdtype(dtype, np.integer):
        samples = np.nan_to_num(samples * np.iinfo(dtype).max * 0.5)
    _check_audio(_load_or_media_error(AudioProcessor(AUDIO).load, (samples.astype(dtype), rate)))


SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]


@FEW
@given(
    subtype=st.sampled_from(SUBTYPES),
    rate=st.sampled_from([8000, 11025, 16000, 44100, 96000]),
    seconds=st.floats(0.0, 2.5),
    channels=st.integers(1, 8),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_audio_files(
    subtype: str, rate: int, seconds: float, channels: int, cut: float | None
) -> None:
    samples = np.zeros((int(seconds * rate), channels), dtype=np.float32) + 0.1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.wav"
        sf.write(path, samples, rate, subtype=subtype)
        if cut is not None:
            path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
        _check_audio(_load_or_media_error(AudioProcessor(AUDIO).load, path))


VIDEO = VideoProcessorConfig(num_frames=4, image_size=SIZE, max_frames=50, max_resolution=64)


@FEW
@given(
    array=arrays(
        st.sampled_from([np.uint8, np.float32, np.int16]),
        st.tuples(
            st.integers(0, 8), st.integers(1, 80), st.integers(1, 80), st.sampled_from([1, 3, 4])
        ),
    )
)
def test_video_arrays(array: np.ndarray[Any, Any]) -> None:
    clip = _load_or_media_error(VideoProcessor(VIDEO).load, array)
    if clip is not None:
        assert clip.dim() == 4 and 1 <= clip.shape[0] <= VIDEO.num_frames
        assert clip.shape[1:] == (3, SIZE, SIZE) and bool(clip.isfinite().all())


@settings(max_examples=EXPLORE or 8, deadline=None, derandomize=not EXPLORE)
@given(
    frames=st.integers(0, 12),
    width=st.integers(1, 50).map(lambda n: 2 * n),
    height=st.integers(1, 50).map(lambda n: 2 * n),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_video_files(frames: int, width: int, height: int, cut: float | None) -> None:
    from media import mp4

    with tempfile.TemporaryDirectory() as tmp:
        path = mp4(Path(tmp) / "x.mp4", frames=frames, size=(width, height))
        if cut is not None:
            path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
        clip = _load_or_media_error(VideoProcessor(VIDEO).load, path)
    if clip is not None:
        assert clip.shape[1:] == (3, SIZE, SIZE) and 1 <= clip.shape[0] <= VIDEO.num_frames
        assert max(width, height) <= VIDEO.max_resolution and frames <= VIDEO.max_frames


TEXT = build_text_processor(
    TextTransformerConfig(dim=32, num_layers=1, num_heads=2, tokenizer={"max_chars": 2000})
)


@FEW
@given(value=st.one_of(st.text(max_size=3000), st.integers(), st.none(), st.binary(max_size=20)))
def test_text(value: Any) -> None:
    ids = _load_or_media_error(TEXT.load, value)
    if ids is not None:
        assert isinstance(value, str) and value.strip() and len(value) <= 2000
        assert 2 <= len(ids) <= TEXT.max_length
        assert all(isinstance(i, int) and 0 <= i < TEXT.tokenizer.vocab_size for i in ids)
