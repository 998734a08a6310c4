"""AudioProcessor: decoding, mixdown, resampling, truncation, errors, SpecAugment, collate."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from omnifuse.config.audio import AudioProcessorConfig, SpecAugmentConfig
from omnifuse.modalities.audio import AudioProcessor, mel_filters
from omnifuse.modalities.base import MediaError


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.fixture
def processor() -> AudioProcessor:
    return AudioProcessor(AudioProcessorConfig(n_mels=64, max_seconds=2.0))


def test_resampling_any_rate_keeps_duration_and_pitch(processor: AudioProcessor) -> None:
    reference = processor.load((_tone(0.5, 16000), 16000))
    peak_band = int(reference.mean(dim=0).argmax())
    # The band whose filter responds most at 440 Hz (FFT bin 11 of 40 Hz at n_fft=400).
    assert peak_band == int(mel_filters(16000, 400, 64)[11].argmax())
    for rate in (44100, 8000):
        wave = processor.load_waveform((_tone(0.5, rate), rate))
        assert wave.shape == (8000,)  # 0.5 s * 16 kHz
        direct = torch.from_numpy(_tone(0.5, 16000))
        # soxr HQ: the resampled tone matches the tone generated at 16 kHz away from the edges.
        torch.testing.assert_close(wave[400:-400], direct[400:-400], atol=5e-3, rtol=0)
        features = processor.load((_tone(0.5, rate), rate))
        assert features.shape == reference.shape == (50, 64)
        assert int(features.mean(dim=0).argmax()) == peak_band


def test_stereo_is_mixed_down_to_the_channel_mean(
    processor: AudioProcessor, tmp_path: Path
) -> None:
    left, right = _tone(0.25, 16000, 440.0), _tone(0.25, 16000, 1000.0)
    stereo = np.stack([left, right], axis=1)  # (S, 2), soundfile layout
    expected = torch.from_numpy((left + right) / 2)
    torch.testing.assert_close(processor.load_waveform((stereo, 16000)), expected)
    torch.testing.assert_close(processor.load_waveform((stereo.T.copy(), 16000)), expected)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    torch.testing.assert_close(processor.load_waveform(path), expected)


def test_wav_from_media_fixture(
    processor: AudioProcessor, media: dict[str, Callable[..., Path]]
) -> None:
    path = media["wav"]("tone.wav", seconds=0.5, sample_rate=22050)
    features = processor.load(path)
    assert features.shape == (50, 64)
    assert bool(torch.isfinite(features).all())
    batch = processor([path, str(path)])
    assert batch["features"].shape == (2, 50, 64)
    torch.testing.assert_close(batch["features"][0], features)


def test_flac_decodes_like_the_same_pcm_wav(processor: AudioProcessor, tmp_path: Path) -> None:
    # int16 samples: libsndfile's WAV and FLAC writers quantise floats differently.
    wave = (np.stack([_tone(0.3, 22050), _tone(0.3, 22050, 660.0)], axis=1) * 32767).astype(
        np.int16
    )
    sf.write(tmp_path / "a.wav", wave, 22050, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", wave, 22050, subtype="PCM_16")
    flac = processor.load(tmp_path / "a.flac")
    assert flac.shape == (30, 64)
    torch.testing.assert_close(flac, processor.load(tmp_path / "a.wav"))


def test_integer_pcm_arrays_are_scaled_like_libsndfile(processor: AudioProcessor) -> None:
    pcm = (_tone(0.1, 16000) * 32767).astype(np.int16)
    expected = torch.from_numpy(pcm.astype(np.float32) / 32768)
    torch.testing.assert_close(processor.load_waveform((pcm, 16000)), expected)


def test_long_clips_are_truncated_to_max_seconds(tmp_path: Path) -> None:
    processor = AudioProcessor(AudioProcessorConfig(n_mels=32, max_seconds=1.0))
    sf.write(tmp_path / "long.wav", _tone(3.0, 44100), 44100)
    assert processor.load_waveform(tmp_path / "long.wav").shape == (16000,)
    assert processor.load(tmp_path / "long.wav").shape == (100, 32)
    assert processor.load((_tone(2.5, 8000), 8000)).shape == (100, 32)


def test_missing_corrupt_and_empty_files_raise_media_error(
    processor: AudioProcessor, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    cases = {
        tmp_path / "missing.flac": "not found",
        corrupt: "cannot decode",
        empty: "no samples",
    }
    for path, reason in cases.items():
        with pytest.raises(MediaError, match=re.escape(str(path))) as info:
            processor.load(path)
        assert reason in info.value.reason
        assert info.value.source == str(path)


def test_bad_arrays_raise_media_error(processor: AudioProcessor) -> None:
    nan = _tone(0.1, 16000)
    nan[10] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        processor.load((nan, 16000))
    with pytest.raises(MediaError, match="sample_rate must be a positive int, got 0"):
        processor.load((_tone(0.1, 16000), 0))
    with pytest.raises(MediaError, match=r"shape \(2, 3, 4\)"):
        processor.load((np.zeros((2, 3, 4)), 16000))
    with pytest.raises(MediaError, match="too short: 100 samples"):
        processor.load((np.zeros(100, dtype=np.float32), 16000))


def test_spec_augment_only_when_training_and_enabled() -> None:
    augment = SpecAugmentConfig(
        enabled=True, freq_masks=2, freq_width=10, time_masks=2, time_width=10
    )
    raw = (_tone(0.5, 16000), 16000)
    on = AudioProcessor(AudioProcessorConfig(n_mels=32, spec_augment=augment))
    clean = on.load(raw)  # a new processor is in eval mode
    assert not on.training

    torch.manual_seed(0)
    augmented = on.train().load(raw)
    assert augmented.shape == clean.shape
    assert not torch.equal(augmented, clean)
    torch.testing.assert_close(on.eval().load(raw), clean)

    off = AudioProcessor(AudioProcessorConfig(n_mels=32))
    off.train()
    torch.testing.assert_close(off.load(raw), clean)


def test_collate_pads_with_zeros_and_masks(processor: AudioProcessor) -> None:
    a, b = torch.randn(7, 64), torch.randn(3, 64)
    batch = processor.collate([a, b])
    assert batch["features"].shape == (2, 7, 64)
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(dim=1).tolist() == [7, 3]
    torch.testing.assert_close(batch["features"][1, :3], b)
    assert bool((batch["features"][1, 3:] == 0).all())
    with pytest.raises(ValueError, match="n_mels=64"):
        processor.collate([torch.randn(4, 32)])
    with pytest.raises(ValueError, match="empty"):
        processor.collate([])


def test_mono_files_read_as_one_channel_equal_the_channel_mean(
    processor: AudioProcessor, tmp_path: Path
) -> None:
    # soundfile reads mono as [S, 1]; taking the channel must equal the mean reduction.
    pcm = (_tone(1.0, 16000) * 32767).astype(np.int16)
    path = tmp_path / "mono.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    reference = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    assert torch.equal(processor.load_waveform(path), torch.from_numpy(reference))
    column, row = pcm[:, None], pcm[None, :]  # both layouts of a one-channel array
    for layout in (column, row):
        assert torch.equal(
            processor.load_waveform((layout, 16000)),
            processor.load_waveform((pcm.astype(np.float32) / 32768.0, 16000)),
        )
