"""Adapter: local Hugging Face speech towers behind the :class:`Encoder` contract.

- Whisper (``WhisperModel`` / ``WhisperForConditionalGeneration`` directories, such as the
  output of ``omnifuse convert whisper-ct2``): the encoder only. Features are the directory's
  ``WhisperFeatureExtractor`` log-mel in omnifuse's audio batch layout
  ``{"features": [B, T, n_mels], "mask": [B, T]}``: padded to Whisper's fixed window
  (``window: native``), or each clip at its own length with a batch padded to its longest clip
  (``window: input``; the encoder then slices its positions and masks the padding).
- wav2vec2 / HuBERT: the normalised waveform, ``{"input_values": [B, S], "mask": [B, S]}``.

Decoding, mixdown and resampling are :class:`AudioProcessor`'s, so every file format and
sample rate the native tower accepts works here too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn

from omnifuse.config.audio import AudioHFConfig, AudioProcessorConfig
from omnifuse.layers.transformer import masked_mean
from omnifuse.modalities.audio.processor import AudioInput, AudioProcessor
from omnifuse.modalities.base import EncoderOutput, Processor
from omnifuse.modalities.hf import (
    HFTower,
    SavesPreprocessor,
    load_hf_model,
    model_class_name,
    read_model_type,
    read_preprocessor,
)
from omnifuse.registry import register_encoder

if TYPE_CHECKING:
    from transformers import WhisperFeatureExtractor

AUDIO_TOWERS: dict[str, str] = {
    "whisper": "WhisperModel",
    "wav2vec2": "Wav2Vec2Model",
    "hubert": "HubertModel",
}
"""HF ``model_type`` -> the transformers class that loads it (Whisper: its encoder is kept)."""

_WAVEFORM_SECONDS = 10.0
_WHISPER_CONV_STRIDE = 2


def _decoder(sample_rate: int, max_seconds: float) -> AudioProcessor:
    """Decode/mix down/resample/truncate through the native processor (its log-mel unused)."""
    return AudioProcessor(AudioProcessorConfig(sample_rate=sample_rate, max_seconds=max_seconds))


class _HFAudioProcessor(SavesPreprocessor, Processor[Any]):
    """Shared parts: the source directory (saved with the model) and waveform decoding."""

    modality: ClassVar[str] = "audio"

    def __init__(self, source: Path, sample_rate: int, max_seconds: float) -> None:
        super().__init__()
        self.source = source
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.decoder = _decoder(sample_rate, max_seconds)


class WhisperFeatureProcessor(_HFAudioProcessor):
    """Raw audio -> Whisper log-mel ``[T, n_mels]`` plus the number of frames that hold audio;
    batches -> ``{"features", "mask"}``.

    ``window="native"``: T is the full window (e.g. 3,000 frames). ``window="input"``: T covers
    the clip and its first frames of silence (:func:`input_frames`), and ``collate`` pads a
    batch to its longest clip, rounded up to an even count, with each clip's own silence frame.
    Either way every frame equals the native window's frame at the same index, so the only
    difference the encoder sees is where the features stop.

    Args:
        extractor: the directory's ``WhisperFeatureExtractor``.
        source: the HF directory.
        max_seconds: truncate longer clips (at most the window).
        window: ``native`` or ``input`` (see above).
    """

    def __init__(
        self,
        extractor: WhisperFeatureExtractor,
        source: Path,
        max_seconds: float,
        window: str = "native",
    ) -> None:
        super().__init__(source, int(extractor.sampling_rate), max_seconds)
        self.extractor = extractor
        self.hop_length = int(extractor.hop_length)
        self.frames = int(extractor.nb_max_frames)
        self.window = window

    def load(self, raw: AudioInput) -> tuple[Tensor, int]:
        """One file or ``(samples, sample_rate)`` -> (``[T, n_mels]`` features, valid frames)."""
        waveform = self.decoder.load_waveform(raw).numpy()
        # STFT frames are centred every hop_length samples: the ones centred inside the clip.
        valid = min(self.frames, max(1, math.ceil(waveform.size / self.hop_length)))
        if self.window == "native":
            return self._extract(waveform, self.frames * self.hop_length), valid
        frames = input_frames(valid, self.frames)
        # Two extra hops of zeros keep the STFT's reflect padding inside silence, so the first
        # ``frames`` frames are bit-identical to the native window's (the clamp at max - 8 dB
        # sees the same maximum: zeros never raise it).
        samples = min(self.frames, frames + 2) * self.hop_length
        return self._extract(waveform, samples)[:frames], valid

    def _extract(self, waveform: np.ndarray[Any, Any], samples: int) -> Tensor:
        """``waveform`` zero-padded to ``samples`` -> its log-mel ``[samples / hop, n_mels]``."""
        batch = self.extractor(
            waveform,
            sampling_rate=self.sample_rate,
            return_tensors="np",
            padding="max_length",
            max_length=samples,
        )
        return torch.from_numpy(np.ascontiguousarray(batch["input_features"][0].T))

    def collate(self, samples: Sequence[tuple[Tensor, int]]) -> dict[str, Tensor]:
        """``{"features": [B, T, n_mels], "mask": [B, T] bool}`` (True at frames with audio)."""
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of audio samples")
        longest = max(f.shape[0] for f, _ in samples)
        frames = min(self.frames, longest + longest % 2)  # conv2 has stride 2: an even count
        # A clip's last frame is pure silence (see ``input_frames``): padding with it continues
        # the native window's features exactly.
        features = torch.stack(
            [torch.cat([f, f[-1:].expand(frames - f.shape[0], -1)]) for f, _ in samples]
        )
        lengths = torch.tensor([n for _, n in samples])
        mask = torch.arange(features.shape[1])[None, :] < lengths[:, None]
        return {"features": features, "mask": mask}

    def sample_length(self, sample: tuple[Tensor, int]) -> int:
        """Frames of audio in ``sample`` (what length-bucketed batching sorts by)."""
        return sample[1]


def input_frames(valid: int, window: int) -> int:
    """Frames a ``window="input"`` clip keeps: its ``valid`` frames, the two frames the
    encoder's convolutions read past them, and one frame of pure silence (padding value).

    Frame ``t`` spans samples ``160 t ± 200``, so frame ``valid + 2`` onwards holds no audio;
    capped at the model's ``window`` frames.
    """
    return min(window, valid + 3)


class WaveformProcessor(_HFAudioProcessor):
    """Raw audio -> waveform ``[S]`` (zero-mean unit-variance when the extractor normalises);
    batches -> ``{"input_values": [B, S], "mask": [B, S]}``, zero-padded (wav2vec2, HuBERT).
    """

    def __init__(self, pre: Mapping[str, Any], source: Path, max_seconds: float) -> None:
        super().__init__(source, int(pre.get("sampling_rate", 16_000)), max_seconds)
        self.normalize = bool(pre.get("do_normalize", True))
        self.padding_value = float(pre.get("padding_value", 0.0))
        self.return_attention_mask = bool(pre.get("return_attention_mask", False))

    def load(self, raw: AudioInput) -> Tensor:
        """One file or ``(samples, sample_rate)`` -> ``[S]`` float32."""
        waveform = self.decoder.load_waveform(raw)
        if self.normalize:  # as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            x = waveform.double()
            waveform = ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float()
        return waveform

    def collate(self, samples: Sequence[Tensor]) -> dict[str, Tensor]:
        """``{"input_values": [B, S], "mask": [B, S] bool}``, ``S = max S_i``."""
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of audio samples")
        lengths = torch.tensor([s.numel() for s in samples])
        values = torch.full((len(samples), int(lengths.max())), self.padding_value)
        for i, sample in enumerate(samples):
            values[i, : sample.numel()] = sample
        mask = torch.arange(values.shape[1])[None, :] < lengths[:, None]
        return {"input_values": values, "mask": mask}


def build_hf_audio_processor(config: AudioHFConfig) -> _HFAudioProcessor:
    """The processor of the HF speech tower at ``config.path`` (from its preprocessor file)."""
    class_name = model_class_name(config.path, AUDIO_TOWERS, "speech")
    pre = read_preprocessor(config.path)
    if class_name != "WhisperModel":
        if config.window != "native":
            raise ValueError(
                f"window={config.window!r} applies to Whisper only; {config.path} is a "
                f"{read_model_type(config.path)} tower, which already reads each clip at its "
                "own length (use the default window: native)"
            )
        seconds = _WAVEFORM_SECONDS if config.max_seconds is None else config.max_seconds
        return WaveformProcessor(pre, config.path, seconds)
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor.from_pretrained(str(config.path))
    window = float(extractor.chunk_length)
    if config.max_seconds is not None and config.max_seconds > window:
        raise ValueError(
            f"max_seconds={config.max_seconds} exceeds the Whisper window of {window:g} s "
            f"({config.path}/preprocessor_config.json chunk_length)"
        )
    seconds = window if config.max_seconds is None else config.max_seconds
    return WhisperFeatureProcessor(extractor, config.path, seconds, config.window)


def _config(model: nn.Module) -> Any:
    return model.config


class WhisperHFEncoder(HFTower):
    """The encoder of a Hugging Face Whisper as an omnifuse audio encoder.

    ``window="native"``: transformers' own forward over the whole window (padding included,
    as Whisper was trained). ``window="input"``: the same modules over the batch's frames
    only: positional embeddings sliced to the ``ceil(T / 2)`` positions, and padding
    positions masked out of self-attention, so a clip's tokens do not depend on what it is
    batched with. Either way ``mask`` marks the positions that cover audio and ``pooled`` is
    their mean.
    """

    modality: ClassVar[str] = "audio"

    def __init__(self, encoder: nn.Module, freeze: bool = False, window: str = "native") -> None:
        super().__init__(encoder, int(_config(encoder).d_model), freeze)
        self.window = window
        self.max_positions = int(_config(encoder).max_source_positions)

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``features`` ``[B, T, n_mels]`` + ``mask`` ``[B, T]`` -> tokens ``[B, T / 2, D]``."""
        if "features" not in inputs:
            raise KeyError(f"audio batch needs 'features'; got keys {sorted(inputs)}")
        features = inputs["features"]
        frames = inputs.get("mask")
        if frames is None:
            frames = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        # conv2 (kernel 3, stride 2, padding 1) maps T frames to ceil(T / 2) positions.
        lengths = (frames.sum(dim=1) + 1) // _WHISPER_CONV_STRIDE
        if self.window == "native":
            out = self.model(input_features=features.transpose(1, 2))  # [B, n_mels, T]
            tokens: Tensor = out.last_hidden_state
            mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        else:
            positions = torch.arange((features.shape[1] + 1) // 2, device=features.device)
            mask = positions[None, :] < lengths[:, None]
            tokens = self._forward_input(features.transpose(1, 2), mask)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))

    def _forward_input(self, features: Tensor, mask: Tensor) -> Tensor:
        """``WhisperEncoder.forward`` at the features' own length: ``[B, n_mels, T]`` +
        position mask ``[B, P]`` -> ``[B, P, D]``, ``P = ceil(T / 2)``.

        Raises:
            ValueError: more frames than the checkpoint has positions for.
        """
        encoder = cast(Any, self.model)
        if features.shape[-1] > _WHISPER_CONV_STRIDE * self.max_positions:
            raise ValueError(
                f"audio of {features.shape[-1]} log-mel frames exceeds this Whisper's "
                f"max_source_positions={self.max_positions} ({_WHISPER_CONV_STRIDE} frames "
                "each); shorten the clip (max_seconds) or split it"
            )
        x = nn.functional.gelu(encoder.conv1(features))
        x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)  # [B, P, D]
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        x = nn.functional.dropout(x, p=encoder.dropout, training=encoder.training)
        attention = padding_bias(mask, x.dtype)
        for layer in encoder.layers:
            # No LayerDrop: tiny.en and its peers train with encoder_layerdrop = 0.
            x = layer(x, attention)
        out: Tensor = encoder.layer_norm(x)
        return out


def padding_bias(mask: Tensor, dtype: torch.dtype) -> Tensor | None:
    """Key-padding mask ``[B, P]`` (True = attend) -> additive bias ``[B, 1, 1, P]`` as
    transformers' attention functions take it, or None when nothing is padded (the attention
    kernels are then free to take their unmasked path)."""
    if bool(mask.all()):
        return None
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    bias = bias.masked_fill(~mask, torch.finfo(dtype).min)
    return bias[:, None, None, :]


class WaveformHFEncoder(HFTower):
    """wav2vec2 / HuBERT as an omnifuse audio encoder; ``pooled`` = mean over valid frames.

    The attention mask is passed only when the checkpoint's feature extractor returns one
    (``feat_extract_norm="layer"`` models); group-norm models (wav2vec2-base) were trained on
    zero-padded batches without it, as transformers documents.
    """

    modality: ClassVar[str] = "audio"

    def __init__(self, model: nn.Module, use_mask: bool, freeze: bool = False) -> None:
        super().__init__(model, int(_config(model).hidden_size), freeze)
        self.use_mask = use_mask

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``input_values`` ``[B, S]`` + ``mask`` ``[B, S]`` -> tokens ``[B, T, D]``."""
        if "input_values" not in inputs:
            raise KeyError(f"audio batch needs 'input_values'; got keys {sorted(inputs)}")
        values = inputs["input_values"]
        samples = inputs.get("mask")
        if samples is None:
            samples = torch.ones_like(values, dtype=torch.bool)
        attention = samples.long() if self.use_mask else None
        out = self.model(input_values=values, attention_mask=attention)
        tokens: Tensor = out.last_hidden_state
        model = cast(Any, self.model)
        lengths = model._get_feat_extract_output_lengths(samples.sum(dim=1))
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


@register_encoder(
    "audio",
    "hf",
    processor=build_hf_audio_processor,
    description="A local Hugging Face speech tower (Whisper encoder, wav2vec2, HuBERT).",
)
def build_audio_hf(config: AudioHFConfig, processor: Processor[Any], pretrained: bool) -> HFTower:
    """Wrap the speech tower at ``config.path`` (weights loaded only when ``pretrained``)."""
    class_name = model_class_name(config.path, AUDIO_TOWERS, "speech")
    model = load_hf_model(config.path, pretrained, class_name)
    if class_name == "WhisperModel":
        # The decoder is dropped; its weights in the directory are simply not used.
        return WhisperHFEncoder(cast(Any, model).get_encoder(), config.freeze, config.window)
    use_mask = isinstance(processor, WaveformProcessor) and processor.return_attention_mask
    return WaveformHFEncoder(model, use_mask, config.freeze)


__all__ = [
    "AUDIO_TOWERS",
    "WaveformHFEncoder",
    "WaveformProcessor",
    "WhisperFeatureProcessor",
    "WhisperHFEncoder",
    "build_audio_hf",
    "build_hf_audio_processor",
    "input_frames",
    "padding_bias",
]
