"""Log-mel features and SpecAugment, for one waveform or a padded batch of waveforms.

Scaling follows whisper, so features are comparable with its published front end:

1. power spectrogram of a centred STFT (periodic Hann window, reflect padding), one frame per
   ``hop_length`` samples (``T = num_samples // hop_length``: the last centred frame, which would
   hang half outside the clip, is dropped);
2. Slaney-style mel filterbank (librosa's default), ``log10`` with a floor of ``1e-10``;
3. values more than 8 (80 dB) below the clip's loudest cell are raised to that level, so silence
   does not dominate the dynamic range;
4. ``(x + 4) / 4``, which maps typical speech/music to roughly ``[-1, 1.5]``.

Step 3 uses the clip's own maximum, so a clip's features do not depend on what it is batched with.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.audio_utils import mel_filter_bank

from omnifuse.config.audio import SpecAugmentConfig

LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0
"""In log10 units: 80 dB below the clip's peak."""


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """Slaney mel filterbank from 0 Hz to Nyquist, area-normalised (librosa/whisper default).

    Returns:
        ``[n_fft // 2 + 1, n_mels]`` float32; column ``m`` is the triangle of mel band ``m``.
    """
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(np.asarray(filters, dtype=np.float32))


def frame_count(num_samples: int, hop_length: int) -> int:
    """Feature frames of a clip of ``num_samples`` samples."""
    return num_samples // hop_length


def whisper_log_scale(mel: Tensor, mask: Tensor) -> Tensor:
    """Log-compress mel power (steps 2-4 of the module docstring).

    Args:
        mel: ``[B, T, n_mels]`` mel power.
        mask: ``[B, T]`` bool, True at valid frames; only these set a clip's peak.

    Returns:
        ``[B, T, n_mels]`` scaled log-mel.
    """
    log_mel = mel.clamp(min=LOG_FLOOR).log10()
    peak = log_mel.masked_fill(~mask[..., None], float("-inf")).amax(dim=(1, 2), keepdim=True)
    log_mel = torch.maximum(log_mel, peak - DYNAMIC_RANGE)
    return (log_mel + 4.0) / 4.0


def reflect_index(lengths: Tensor, total: int, pad: int) -> Tensor:
    """Gather indices that reflect-pad each row of a right-padded batch at its *own* end.

    Position ``q`` of the output reads sample ``p = q - pad`` of its row, reflected at 0 and at
    ``length - 1`` exactly like ``F.pad(mode="reflect")`` on the unpadded clip; so a clip's
    frames do not depend on the zeros that pad it in a batch. Clips shorter than ``pad``
    (where reflection is undefined) are clamped to their edge samples.

    Args:
        lengths: ``[B]`` valid samples per row.
        total: padded batch length ``S``.
        pad: samples added on each side (``n_fft // 2``).

    Returns:
        ``[B, S + 2 * pad]`` long indices into ``[0, length)``.
    """
    p = torch.arange(-pad, total + pad, device=lengths.device)[None, :]  # (1, S + 2pad)
    last = (lengths - 1).clamp(min=0)[:, None]  # (B, 1)
    p = p.abs()
    p = torch.where(p > last, 2 * last - p, p)
    return torch.minimum(p.clamp(min=0), last)


class LogMelSpectrogram(nn.Module):
    """Waveforms -> whisper-scaled log-mel features with a frame mask (a batch dict for the
    audio encoder). A module so it can move to the GPU and run on the fly.

    Args:
        sample_rate: rate of the waveforms it will see.
        n_fft: STFT size (window length).
        hop_length: samples between frames.
        n_mels: mel bands.
    """

    window: Tensor
    filters: Tensor

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        # Derived from the config, so they stay out of checkpoints.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filters(sample_rate, n_fft, n_mels), persistent=False)

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Compute log-mel features.

        Args:
            waveforms: ``[B, S]`` mono waveforms right-padded to ``S`` (or one ``[S]`` clip).
            lengths: ``[B]`` valid samples per row; None means all ``S`` are valid.

        Returns:
            ``{"features": [B, T, n_mels], "mask": [B, T] bool}`` with ``T = S // hop_length``;
            a row has ``length // hop_length`` valid frames and zeros after them.
        """
        if waveforms.dim() == 1:
            waveforms = waveforms[None]
        batch, total = waveforms.shape
        frames = frame_count(total, self.hop_length)
        if frames < 1:
            raise ValueError(
                f"{total} samples give no frame: need at least hop_length={self.hop_length}"
            )
        full = lengths is None
        lengths = self._check_lengths(lengths, batch, total, waveforms.device)
        padded = self._reflect_pad(waveforms.float(), lengths, full)  # (B, S + n_fft)
        spec = torch.stft(
            padded,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=False,
            return_complex=True,
        )  # (B, n_fft // 2 + 1, 1 + S // hop)
        power = spec[..., :frames].abs() ** 2
        mel = (self.filters.T @ power).transpose(1, 2)  # (B, T, n_mels)
        positions = torch.arange(frames, device=waveforms.device)
        mask = positions[None, :] < (lengths // self.hop_length)[:, None]
        features = whisper_log_scale(mel, mask).masked_fill(~mask[..., None], 0.0)
        return {"features": features, "mask": mask}

    def _reflect_pad(self, waveforms: Tensor, lengths: Tensor, full: bool) -> Tensor:
        """``[B, S] -> [B, S + n_fft]``: each row reflect-padded by ``n_fft // 2`` at its own
        ends (:func:`reflect_index`)."""
        pad = self.n_fft // 2
        if full and waveforms.shape[1] > pad:
            # Every row at full length (one clip, as the processor computes it): plain reflect
            # padding gives the same samples as the per-row gather, without building indices.
            return F.pad(waveforms[:, None], (pad, pad), mode="reflect")[:, 0]
        return waveforms.gather(1, reflect_index(lengths, waveforms.shape[1], pad))

    @staticmethod
    def _check_lengths(
        lengths: Tensor | None, batch: int, total: int, device: torch.device
    ) -> Tensor:
        if lengths is None:
            return torch.full((batch,), total, dtype=torch.long, device=device)
        if lengths.shape != (batch,) or bool((lengths < 0).any() or (lengths > total).any()):
            raise ValueError(
                f"lengths must be [{batch}] values in [0, {total}], got {lengths.tolist()}"
            )
        return lengths.to(device=device, dtype=torch.long)


def _random_span(size: int, max_width: int, generator: torch.Generator | None) -> slice:
    """A random ``[start, start + width)`` with ``width`` uniform in ``[0, max_width]``."""
    width = int(torch.randint(0, min(max_width, size) + 1, (1,), generator=generator))
    start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
    return slice(start, start + width)


def spec_augment(
    features: Tensor, config: SpecAugmentConfig, generator: torch.Generator | None = None
) -> Tensor:
    """SpecAugment (Park et al. 2019): mask random mel bands and random frame spans.

    Masked cells take the clip's mean value rather than 0: with whisper scaling 0 is a specific
    loudness, and the mean keeps the clip's overall level unchanged. Uses the global torch RNG
    unless ``generator`` is given, so DataLoader workers (seeded differently) draw different masks.

    Args:
        features: ``[T, n_mels]`` log-mel features of one clip.
        config: number and maximum width of the masks.
        generator: optional RNG.

    Returns:
        ``[T, n_mels]`` masked copy.
    """
    out = features.clone()
    if features.numel() == 0:
        return out
    frames, bands = features.shape
    fill = features.mean()
    for _ in range(config.freq_masks):
        out[:, _random_span(bands, config.freq_width, generator)] = fill
    for _ in range(config.time_masks):
        out[_random_span(frames, config.time_width, generator), :] = fill
    return out
