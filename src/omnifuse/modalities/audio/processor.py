"""Audio processor: any file libsndfile reads (or an array) -> mono -> resampled -> log-mel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
import torch
from torch import Tensor

from omnifuse.config.audio import AudioProcessorConfig, AudioTransformerConfig
from omnifuse.modalities.audio.features import LogMelSpectrogram, spec_augment
from omnifuse.modalities.base import MediaError, Processor

AudioInput = str | Path | tuple[npt.NDArray[Any], int]
"""A file path, or ``(samples, sample_rate)`` with samples ``[S]`` or ``[S, C]``/``[C, S]``."""

Waveform = npt.NDArray[np.float32]

ARRAY_SOURCE = "<array>"
"""How errors name an in-memory waveform."""


def _to_float(samples: npt.NDArray[Any]) -> Waveform:
    """Integer PCM is scaled to [-1, 1) as libsndfile does; floats are taken as they are."""
    if np.issubdtype(samples.dtype, np.integer):
        scale = float(np.iinfo(samples.dtype).max) + 1.0
        return (samples.astype(np.float64) / scale).astype(np.float32)
    return samples.astype(np.float32, copy=False)


def _mixdown(samples: npt.NDArray[Any], source: str) -> Waveform:
    """``[S]``, ``[S, C]`` or ``[C, S]`` -> mono ``[S]`` (channel mean).

    For 2-D input the shorter axis is taken as channels: clips are far longer than their
    channel count, and this accepts both soundfile's and torchaudio's layouts.
    """
    if samples.ndim == 1:
        return _to_float(samples)
    if samples.ndim != 2:
        raise MediaError(source, f"expected samples [S] or [S, C], got shape {samples.shape}")
    channel_axis = 1 if samples.shape[1] <= samples.shape[0] else 0
    if samples.shape[channel_axis] == 1:
        # Mono as [S, 1] (how soundfile reads every mono file): the mean of one channel is
        # that channel, without a reduction pass over the clip.
        return _to_float(np.take(samples, 0, axis=channel_axis))
    return np.asarray(_to_float(samples).mean(axis=channel_axis), dtype=np.float32)


def _source_name(raw: object) -> str:
    """How errors name a raw input: its path, or ``<array>``."""
    return ARRAY_SOURCE if isinstance(raw, tuple) else str(raw)


MAX_SAMPLE_RATE = 768_000
"""Highest header sample rate accepted: the read is sized from it, so a forged one is refused."""

MAX_CHANNELS = 64
"""Most channels accepted in a file (mixed down to mono; 7.1 is 8)."""


def _check_header(path: Path, rate: int, channels: int) -> None:
    """Refuse headers whose rate or channel count would size an unreasonable read."""
    if not 0 < rate <= MAX_SAMPLE_RATE:
        raise MediaError(path, f"sample rate {rate} Hz is outside 1..{MAX_SAMPLE_RATE} Hz")
    if not 0 < channels <= MAX_CHANNELS:
        raise MediaError(path, f"{channels} channels; at most {MAX_CHANNELS} are read")


def _read_limit(max_seconds: float, rate: int) -> int:
    """Source samples needed for ``max_seconds``, plus 10 ms of context for the resampler."""
    return math.ceil(max_seconds * rate) + rate // 100


def _read_file(path: Path, max_seconds: float) -> tuple[npt.NDArray[Any], int]:
    """Decode at most ``max_seconds`` (plus 10 ms of context for the resampler) of a file.

    Only that prefix is read (``audio.processor.max_seconds`` bounds memory, whatever the file's
    length); the rest of the file is never decoded.
    """
    if path.is_dir():
        raise MediaError(path, "is a directory, not an audio file")
    if not path.is_file():
        raise MediaError(path, "audio file not found")
    try:
        with sf.SoundFile(path) as f:
            rate = int(f.samplerate)
            _check_header(path, rate, int(f.channels))
            limit = _read_limit(max_seconds, rate)
            return f.read(frames=limit, dtype="float32", always_2d=True), rate
    except MediaError:
        raise
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as err:
        raise MediaError(path, f"cannot decode audio ({err})") from err


class AudioProcessor(Processor[Tensor]):
    """Raw audio -> log-mel features ``[T, n_mels]``; batches -> ``{"features", "mask"}``.

    ``load`` reads a file (anything libsndfile decodes: WAV, FLAC, OGG, MP3, ...) or takes
    ``(samples, sample_rate)``, mixes down to mono, resamples to ``config.sample_rate`` with
    soxr, truncates to ``config.max_seconds`` and computes whisper-scaled log-mel features
    (see :mod:`omnifuse.modalities.audio.features`). In training mode with
    ``config.spec_augment.enabled`` it also applies SpecAugment.

    Args:
        config: processor settings; defaults to :class:`AudioProcessorConfig` defaults.
    """

    modality: ClassVar[str] = "audio"

    def __init__(self, config: AudioProcessorConfig | None = None) -> None:
        super().__init__()
        self.config = AudioProcessorConfig() if config is None else config
        c = self.config
        self.log_mel = LogMelSpectrogram(c.sample_rate, c.n_fft, c.hop_length, c.n_mels)

    @property
    def max_samples(self) -> int:
        """Samples kept of a clip at ``config.sample_rate``."""
        return round(self.config.max_seconds * self.config.sample_rate)

    def load_waveform(self, raw: AudioInput) -> Tensor:
        """Decode, mix down, resample and truncate one input.

        Returns:
            ``[S]`` float32 mono waveform at ``config.sample_rate``, ``S <= max_samples``.

        Raises:
            MediaError: missing, undecodable, empty or non-finite audio (names the source).
        """
        source = _source_name(raw)
        samples, rate = self._decode(raw)
        if samples.size == 0:
            raise MediaError(source, "audio has no samples")
        # Cut before resampling: at a low source rate a short array is a long clip, and
        # resampling all of it first would allocate what max_seconds is there to bound.
        mono = _mixdown(samples, source)[: _read_limit(self.config.max_seconds, rate)]
        if not np.isfinite(mono).all():
            raise MediaError(source, "audio contains NaN or infinite samples")
        if rate != self.config.sample_rate:
            mono = soxr.resample(mono, rate, self.config.sample_rate, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(mono[: self.max_samples]))

    def _decode(self, raw: AudioInput) -> tuple[npt.NDArray[Any], int]:
        if isinstance(raw, str | Path):
            return _read_file(Path(raw), self.config.max_seconds)
        if not isinstance(raw, tuple) or len(raw) != 2:
            raise MediaError(repr(type(raw)), "expected a path or a (samples, sample_rate) tuple")
        samples, rate = raw
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise MediaError(ARRAY_SOURCE, f"sample_rate must be a positive int, got {rate!r}")
        if rate > MAX_SAMPLE_RATE:
            raise MediaError(ARRAY_SOURCE, f"sample_rate {rate} Hz is above {MAX_SAMPLE_RATE} Hz")
        return np.asarray(samples), int(rate)

    @property
    def augmenting(self) -> bool:
        """Whether :meth:`load` applies SpecAugment now."""
        return self.training and self.config.spec_augment.enabled

    def features(self, waveform: Tensor, source: str = ARRAY_SOURCE) -> Tensor:
        """Log-mel features of one mono waveform at ``config.sample_rate`` (+ SpecAugment when
        training with it enabled).

        Args:
            waveform: ``[S]`` samples.
            source: name used in errors.

        Returns:
            ``[S // hop_length, n_mels]`` float32.
        """
        if waveform.numel() < self.config.hop_length:
            raise MediaError(
                source,
                f"too short: {waveform.numel()} samples at {self.config.sample_rate} Hz, need "
                f"at least hop_length={self.config.hop_length}",
            )
        # no_grad, not inference_mode: inference tensors cannot be saved for a later backward.
        with torch.no_grad():
            batch: dict[str, Tensor] = self.log_mel(waveform)
        features = batch["features"][0]
        if self.augmenting:
            features = spec_augment(features, self.config.spec_augment)
        return features

    def load(self, raw: AudioInput) -> Tensor:
        """One file or ``(samples, sample_rate)`` -> ``[T, n_mels]`` log-mel features."""
        source = _source_name(raw)
        return self.features(self.load_waveform(raw), source)

    def collate(self, samples: Sequence[Tensor]) -> dict[str, Tensor]:
        """Right-pad features with zeros.

        Args:
            samples: ``[T_i, n_mels]`` tensors from :meth:`load`.

        Returns:
            ``{"features": [B, T, n_mels], "mask": [B, T] bool}``, ``T = max T_i``.
        """
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of audio samples")
        n_mels = self.config.n_mels
        bad = [tuple(s.shape) for s in samples if s.dim() != 2 or s.shape[1] != n_mels]
        if bad:
            raise ValueError(f"audio samples must be [T, n_mels={n_mels}], got shapes {bad}")
        lengths = torch.tensor([s.shape[0] for s in samples])
        features = torch.zeros(len(samples), int(lengths.max()), n_mels)
        for i, sample in enumerate(samples):
            features[i, : sample.shape[0]] = sample
        mask = torch.arange(features.shape[1])[None, :] < lengths[:, None]
        return {"features": features, "mask": mask}


def build_audio_processor(config: AudioTransformerConfig) -> AudioProcessor:
    """Registry hook: the processor of an audio encoder config."""
    return AudioProcessor(config.processor)
