"""Audio tower configs: resampling + log-mel features, SpecAugment, conv-subsampled Transformer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims

SUBSAMPLING = 4
"""Frames per encoder position: two stride-2 convolutions."""


class SpecAugmentConfig(StrictModel):
    """Frequency/time masking on log-mel features, training only (Park et al. 2019)."""

    enabled: bool = False
    freq_masks: int = Field(default=2, ge=0)
    freq_width: int = Field(default=8, ge=0)
    time_masks: int = Field(default=2, ge=0)
    time_width: int = Field(default=20, ge=0)


class AudioProcessorConfig(StrictModel):
    """Any sample rate in; resampled to ``sample_rate``; log-mel features out."""

    sample_rate: int = Field(default=16000, gt=0)
    n_fft: int = Field(default=400, gt=0)
    hop_length: int = Field(default=160, gt=0)
    n_mels: int = Field(default=64, gt=0)
    max_seconds: float = Field(default=10.0, gt=0)
    spec_augment: SpecAugmentConfig = Field(default_factory=SpecAugmentConfig)

    @model_validator(mode="after")
    def _fft_fits(self) -> AudioProcessorConfig:
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length={self.hop_length} must not exceed n_fft={self.n_fft}")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(
                f"n_mels={self.n_mels} exceeds the {self.n_fft // 2 + 1} FFT bins "
                f"of n_fft={self.n_fft}"
            )
        if self.max_frames < 1:
            raise ValueError(
                f"max_seconds={self.max_seconds} is shorter than one hop_length={self.hop_length} "
                f"at sample_rate={self.sample_rate}: no feature frame would remain"
            )
        return self

    @property
    def max_frames(self) -> int:
        """Log-mel frames of a clip of ``max_seconds`` (one frame per ``hop_length`` samples)."""
        return round(self.max_seconds * self.sample_rate) // self.hop_length


class AudioTransformerConfig(TransformerDims):
    """Two stride-2 convolutions (4x fewer frames) then a Transformer (whisper/Conformer-style)."""

    type: Literal["conv_transformer"] = "conv_transformer"
    processor: AudioProcessorConfig = Field(default_factory=AudioProcessorConfig)
    max_positions: int = Field(default=512, gt=0, description="Frames after subsampling.")
    norm_eps: float = 1e-5
    pooling: Literal["mean"] = "mean"

    @model_validator(mode="after")
    def _positions_cover_clip(self) -> AudioTransformerConfig:
        # The longest clip the processor emits must fit the position table, otherwise the
        # error would only surface at run time on the first long clip.
        needed = math.ceil(self.processor.max_frames / SUBSAMPLING)
        if needed > self.max_positions:
            seconds = self.max_positions * SUBSAMPLING * self.processor.hop_length
            raise ValueError(
                f"max_positions={self.max_positions} is too small for "
                f"processor.max_seconds={self.processor.max_seconds}: such a clip gives {needed} "
                f"positions after {SUBSAMPLING}x subsampling; set max_positions >= {needed} or "
                f"processor.max_seconds <= {seconds / self.processor.sample_rate:g}"
            )
        return self


class AudioHFConfig(StrictModel):
    """A local Hugging Face speech tower: the Whisper encoder (a Whisper directory, e.g. one
    written by ``omnifuse convert whisper-ct2``), wav2vec2 or HuBERT. Features come from the
    directory's ``preprocessor_config.json`` (Whisper log-mel, or normalised waveform)."""

    type: Literal["hf"] = "hf"
    path: Path = Field(description="Local HF model directory (config.json, weights, processor).")
    max_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Truncate longer clips; default (and maximum for Whisper): Whisper's 30 s "
        "window, 10 s for wav2vec2/HuBERT.",
    )
    window: Literal["native", "input"] = Field(
        default="native",
        description="Whisper only. native: every clip padded to the model's 30 s window, "
        "attended in full, as Whisper was trained. input: each clip at its own length (a "
        "batch padded to its longest clip, an even frame count), the encoder's positions "
        "sliced to it and padding masked out of encoder and decoder attention: ~10x less "
        "work on 3-s clips.",
    )
    freeze: bool = False


def _default_audio_type(value: Any) -> Any:
    """Encoders without ``type`` are the native ``conv_transformer`` (as before ``hf``)."""
    if isinstance(value, dict) and "type" not in value:
        return {"type": "conv_transformer", **value}
    return value


AudioEncoderConfig = Annotated[
    AudioTransformerConfig | AudioHFConfig,
    Field(discriminator="type"),
    BeforeValidator(_default_audio_type),
]
