"""HF speech towers (Whisper encoder, wav2vec2, HuBERT) through the production config ->
registry path: features and hidden states equal transformers'; masks follow the clip lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers as tf

from omnifuse.config.model import EncodersConfig
from omnifuse.modalities.audio import WaveformHFEncoder, WhisperHFEncoder
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.registry import encoder_spec

ATOL = 1e-5  # float32; wav2vec2 inputs are normalised in float64 (HF: float32), ~1e-6 apart


def build(path: Path, pretrained: bool = True, **fields: Any) -> tuple[Encoder, Processor[Any]]:
    config = EncodersConfig.model_validate({"audio": {"type": "hf", "path": str(path), **fields}})
    spec = encoder_spec("audio", "hf")
    processor = spec.build_processor(config.audio)
    return spec.build_encoder(config.audio, processor, pretrained), processor


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [0.1 * rng.standard_normal(n).astype(np.float32) for n in (4_000, 12_000)]


def test_whisper_encoder_matches_transformers(tiny_hf_towers: dict[str, Path]) -> None:
    path = tiny_hf_towers["whisper"]
    encoder, processor = build(path)
    assert isinstance(encoder, WhisperHFEncoder) and encoder.dim == 32
    audio = clips()
    batch = processor([(a, 16_000) for a in audio])
    extractor = tf.WhisperFeatureExtractor.from_pretrained(path)
    features = extractor(audio, sampling_rate=16_000, return_tensors="pt").input_features
    torch.testing.assert_close(batch["features"].transpose(1, 2), features, atol=0, rtol=0)
    with torch.no_grad():
        ours = encoder.eval()(batch)
        theirs = tf.WhisperModel.from_pretrained(path).eval().encoder(input_features=features)
    torch.testing.assert_close(ours.tokens, theirs.last_hidden_state, atol=ATOL, rtol=0)
    # 4,000 samples = 25 frames of 160 -> 13 positions; 12,000 -> 75 -> 38 (of 50).
    assert ours.mask.sum(1).tolist() == [13, 38]
    expected = theirs.last_hidden_state[0, :13].mean(0)
    torch.testing.assert_close(ours.pooled[0], expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_waveform_towers_match_transformers(kind: str, tiny_hf_towers: dict[str, Path]) -> None:
    path = tiny_hf_towers[kind]
    encoder, processor = build(path)
    assert isinstance(encoder, WaveformHFEncoder)
    audio = clips()
    batch = processor([(a, 16_000) for a in audio])
    extractor = tf.Wav2Vec2FeatureExtractor.from_pretrained(path)
    inputs = extractor(audio, sampling_rate=16_000, return_tensors="pt", padding=True)
    torch.testing.assert_close(batch["input_values"], inputs.input_values, atol=1e-6, rtol=0)
    cls = tf.Wav2Vec2Model if kind == "wav2vec2" else tf.HubertModel
    with torch.no_grad():
        ours = encoder.eval()(batch)
        theirs = cls.from_pretrained(path).eval()(**inputs)
    torch.testing.assert_close(ours.tokens, theirs.last_hidden_state, atol=ATOL, rtol=0)
    assert ours.mask.sum(1).tolist() == [198, 598]  # conv strides 5 x 4 with kernels 10, 8


def test_converted_whisper_ct2_directory_is_an_audio_tower(tmp_path: Path) -> None:
    """``omnifuse convert whisper-ct2`` output loads as the audio ``hf`` encoder."""
    import importlib.util
    import sys

    helper = Path(__file__).parents[2] / "convert" / "ct2_writer.py"
    spec = importlib.util.spec_from_file_location("ct2_writer", helper)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ct2_writer", module)
    spec.loader.exec_module(module)
    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    torch.manual_seed(0)
    config = tf.WhisperConfig(
        vocab_size=264,
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=50,
        max_target_positions=12,
        pad_token_id=256,
        bos_token_id=256,
        eos_token_id=256,
        decoder_start_token_id=257,
    )
    whisper = tf.WhisperForConditionalGeneration(config).eval()
    module.write_ct2_whisper(whisper, tmp_path / "ct2", torch.float32)
    convert_whisper_ct2(tmp_path / "ct2", tmp_path / "hf")
    encoder, processor = build(tmp_path / "hf")
    batch = processor([(clips()[1], 16_000)])
    with torch.no_grad():
        ours = encoder.eval()(batch).tokens
        theirs = whisper.model.encoder(input_features=batch["features"].transpose(1, 2))
    torch.testing.assert_close(ours, theirs.last_hidden_state, atol=ATOL, rtol=0)


def test_max_seconds_is_checked_against_the_whisper_window(
    tiny_hf_towers: dict[str, Path],
) -> None:
    with pytest.raises(ValueError, match="exceeds the Whisper window of 1 s"):
        build(tiny_hf_towers["whisper"], max_seconds=2.0)
    _, processor = build(tiny_hf_towers["wav2vec2"], max_seconds=0.5)
    assert processor([(clips()[1], 16_000)])["input_values"].shape == (1, 8_000)


def test_gradient_checkpointing_keeps_outputs(tiny_hf_towers: dict[str, Path]) -> None:
    encoder, processor = build(tiny_hf_towers["whisper"])
    batch = processor([(a, 16_000) for a in clips()])
    encoder.train()
    torch.manual_seed(0)
    plain = encoder(batch).pooled
    encoder.set_gradient_checkpointing(True)
    torch.manual_seed(0)
    checkpointed = encoder(batch).pooled
    torch.testing.assert_close(plain, checkpointed)
    checkpointed.sum().backward()


def sliced_reference(encoder: tf.WhisperModel, features: torch.Tensor) -> torch.Tensor:
    """transformers' own encoder modules at the features' length: ``[B, n_mels, T]`` ->
    ``[B, ceil(T / 2), D]``, positions sliced (``WhisperEncoder.forward`` minus its length
    check)."""
    enc = encoder.encoder
    x = torch.nn.functional.gelu(enc.conv1(features))
    x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    for layer in enc.layers:
        x = layer(x, None)
    return enc.layer_norm(x)


def test_input_window_features_are_the_native_window_cut_short(
    tiny_hf_towers: dict[str, Path],
) -> None:
    """Every frame of a ``window: input`` batch equals the native window's frame, padding too."""
    path = tiny_hf_towers["whisper"]
    _, native = build(path)
    _, short = build(path, window="input")
    raws = [(a, 16_000) for a in clips()]
    full, cut = native(raws), short(raws)
    # 12,000 samples = 75 valid frames + 3 (two read by the convolutions, one of silence) = 78.
    assert cut["features"].shape == (2, 78, 16) and full["features"].shape == (2, 100, 16)
    torch.testing.assert_close(cut["features"], full["features"][:, :78], atol=0, rtol=0)
    assert cut["mask"].tolist() == full["mask"][:, :78].tolist()
    # An odd longest clip is padded to an even frame count: 4,000 samples -> 25 + 3 = 28 frames;
    # 4,160 -> 26 + 3 = 29 -> 30.
    assert short([(clips()[1][:4_160], 16_000)])["features"].shape[1] == 30


def test_input_window_encoder_matches_sliced_transformers(tiny_hf_towers: dict[str, Path]) -> None:
    path = tiny_hf_towers["whisper"]
    encoder, processor = build(path, window="input")
    assert isinstance(encoder, WhisperHFEncoder) and encoder.window == "input"
    batch = processor([(clips()[1], 16_000)])
    whole = {"features": batch["features"], "mask": torch.ones(batch["mask"].shape, dtype=bool)}
    with torch.no_grad():
        ours = encoder.eval()(whole)
        theirs = sliced_reference(
            tf.WhisperModel.from_pretrained(path).eval(), batch["features"].transpose(1, 2)
        )
    assert ours.tokens.shape == (1, 39, 32)
    torch.testing.assert_close(ours.tokens, theirs, atol=ATOL, rtol=0)


def test_input_window_tokens_do_not_depend_on_the_batch(tiny_hf_towers: dict[str, Path]) -> None:
    """A clip's valid tokens are the same alone and padded beside a longer clip (masked)."""
    encoder, processor = build(tiny_hf_towers["whisper"], window="input")
    encoder.eval()
    raws = [(a, 16_000) for a in clips()]
    with torch.no_grad():
        together = encoder(processor(raws))
        alone = [encoder(processor([raw])) for raw in raws]
    assert together.mask.sum(1).tolist() == [13, 38] and together.tokens.shape[1] == 39
    for i, single in enumerate(alone):
        n = int(single.mask.sum())
        torch.testing.assert_close(together.tokens[i, :n], single.tokens[0, :n], atol=ATOL, rtol=0)
        torch.testing.assert_close(together.pooled[i], single.pooled[0], atol=ATOL, rtol=0)


def test_input_window_refuses_audio_beyond_the_positions(tiny_hf_towers: dict[str, Path]) -> None:
    encoder, _ = build(tiny_hf_towers["whisper"], window="input")
    too_long = {"features": torch.zeros(1, 102, 16)}
    with pytest.raises(
        ValueError, match="102 log-mel frames exceeds this Whisper's max_source_positions=50"
    ):
        encoder(too_long)
    with pytest.raises(ValueError, match="window='input' applies to Whisper only"):
        build(tiny_hf_towers["wav2vec2"], window="input")
