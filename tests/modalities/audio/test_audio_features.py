"""Log-mel features: filterbank and feature parity with references, batching, SpecAugment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.audio_utils import spectrogram, window_function

from omnifuse.config.audio import SpecAugmentConfig
from omnifuse.modalities.audio.features import LogMelSpectrogram, mel_filters, spec_augment


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's ``htk=False``)."""
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * 27.0 / math.log(6.4)
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, log_part)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(
        mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp((mel - 15.0) * math.log(6.4) / 27)
    )


def _reference_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Hand-written Slaney filterbank: triangles in Hz, area-normalised by 2 / band width."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _slaney_hz(np.linspace(0.0, _slaney_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    out = np.zeros((fft_hz.size, n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        tri = np.minimum((fft_hz - lo) / (mid - lo), (hi - fft_hz) / (hi - mid))
        out[:, m] = np.maximum(tri, 0.0) * 2.0 / (hi - lo)
    return out


def _tone(seconds: float, rate: int, freq: float = 440.0, noise: float = 0.01) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    gen = np.random.default_rng(1)
    wave = 0.3 * np.sin(2 * math.pi * freq * t) + noise * gen.standard_normal(t.size)
    return wave.astype(np.float32)


@pytest.mark.parametrize(("sample_rate", "n_fft", "n_mels"), [(16000, 400, 64), (8000, 256, 40)])
def test_mel_filters_match_hand_written_slaney_bank(
    sample_rate: int, n_fft: int, n_mels: int
) -> None:
    ours = mel_filters(sample_rate, n_fft, n_mels).numpy()
    ref = _reference_filters(sample_rate, n_fft, n_mels)
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


def test_features_match_transformers_numpy_spectrogram() -> None:
    """Same numbers as whisper's numpy front end (transformers.audio_utils) on a 16 kHz clip."""
    wave = _tone(0.37, 16000)
    filters = mel_filters(16000, 400, 64)
    ref = spectrogram(
        wave.astype(np.float64),
        window_function(400, "hann"),
        frame_length=400,
        hop_length=160,
        power=2.0,
        mel_filters=filters.numpy().astype(np.float64),
        mel_floor=1e-10,
        log_mel="log10",
    )[:, :-1]  # (n_mels, T): whisper drops the last centred frame
    ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0

    out = LogMelSpectrogram(16000, 400, 160, 64)(torch.from_numpy(wave))
    assert out["features"].shape == (1, len(wave) // 160, 64)
    assert bool(out["mask"].all())
    np.testing.assert_allclose(out["features"][0].numpy(), ref.T, atol=2e-4)


def test_dynamic_range_is_80_db_below_the_clip_peak() -> None:
    wave = torch.zeros(3200)
    wave[1600:] = torch.from_numpy(_tone(0.1, 16000, noise=0.0))  # silence then a tone
    features = LogMelSpectrogram(16000, 400, 160, 64)(wave)["features"][0]
    peak, floor = float(features.max()), float(features.min())
    assert floor == pytest.approx(peak - 8.0 / 4.0, abs=1e-5)  # 8 log10 units, then / 4


def test_batched_features_equal_per_clip_features_at_valid_frames() -> None:
    log_mel = LogMelSpectrogram(16000, 400, 160, 32)
    clips = [torch.from_numpy(_tone(s, 16000, freq=f)) for s, f in [(0.3, 440), (0.2, 900)]]
    clips.append(clips[1][:1337])
    lengths = torch.tensor([c.numel() for c in clips])
    batch = torch.full((3, int(lengths.max())), 5.0)  # loud padding that must not leak
    for i, clip in enumerate(clips):
        batch[i, : clip.numel()] = clip

    out = log_mel(batch, lengths)
    assert out["mask"].sum(dim=1).tolist() == [n // 160 for n in lengths.tolist()]
    for i, clip in enumerate(clips):
        alone = log_mel(clip)["features"][0]
        valid = alone.shape[0]
        torch.testing.assert_close(out["features"][i, :valid], alone, atol=1e-5, rtol=1e-5)
        assert bool((out["features"][i, valid:] == 0).all())


def test_log_mel_rejects_bad_lengths_and_too_short_input() -> None:
    log_mel = LogMelSpectrogram(16000, 400, 160, 32)
    with pytest.raises(ValueError, match="lengths must be"):
        log_mel(torch.zeros(2, 800), torch.tensor([800, 900]))
    with pytest.raises(ValueError, match="hop_length=160"):
        log_mel(torch.zeros(100))


def test_spec_augment_masks_whole_bands_and_frames_with_the_mean() -> None:
    features = torch.randn(60, 32)
    config = SpecAugmentConfig(enabled=True, freq_masks=2, freq_width=6, time_masks=2, time_width=9)
    out = spec_augment(features, config, generator=torch.Generator().manual_seed(3))
    changed = out != features
    assert bool(changed.any())
    assert torch.allclose(out[changed], features.mean().expand(int(changed.sum())))
    full_bands = changed.all(dim=0)  # (n_mels,)
    full_frames = changed.all(dim=1)  # (T,)
    assert bool((changed <= (full_bands[None, :] | full_frames[:, None])).all())
    assert int(full_bands.sum()) <= 2 * 6 and int(full_frames.sum()) <= 2 * 9


def test_spec_augment_with_zero_masks_is_identity() -> None:
    features = torch.randn(20, 8)
    config = SpecAugmentConfig(enabled=True, freq_masks=0, time_masks=0)
    assert torch.equal(spec_augment(features, config), features)


@pytest.mark.parametrize("samples", [201, 16000, 16123])
def test_full_length_reflect_pad_equals_the_per_row_gather(samples: int) -> None:
    # Without lengths the features take plain reflect padding; with lengths, the per-row
    # gather: the same samples, so bit-identical features.
    log_mel = LogMelSpectrogram(16000, 400, 160, 64)
    wave = torch.from_numpy(_tone(samples / 16000, 16000))[None]
    fast = log_mel(wave)["features"]
    gathered = log_mel(wave, torch.tensor([samples]))["features"]
    assert torch.equal(fast, gathered)
