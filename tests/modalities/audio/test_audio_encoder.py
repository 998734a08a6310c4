"""AudioTransformer contract: shapes, mask subsampling, padding invariance, gradients, config."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from omnifuse import registry
from omnifuse.config.audio import AudioProcessorConfig, AudioTransformerConfig
from omnifuse.modalities.audio import AudioTransformer, ConvSubsampler
from omnifuse.modalities.base import EncoderOutput

N_MELS = 16


def _config(**overrides: object) -> AudioTransformerConfig:
    values: dict[str, object] = {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 4,
        "max_positions": 32,
        "processor": AudioProcessorConfig(n_mels=N_MELS, max_seconds=1.0),
    }
    values.update(overrides)
    return AudioTransformerConfig.model_validate(values)


@pytest.fixture
def encoder() -> AudioTransformer:
    return AudioTransformer(_config()).eval()


def _batch(lengths: list[int], pad_value: float = 0.0) -> dict[str, torch.Tensor]:
    total = max(lengths)
    features = torch.full((len(lengths), total, N_MELS), pad_value)
    mask = torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]
    features[mask] = torch.randn(int(mask.sum()), N_MELS)
    return {"features": features, "mask": mask}


def test_output_shapes_and_mask_subsampling(encoder: AudioTransformer) -> None:
    out = encoder(_batch([37, 21, 4, 1]))
    assert isinstance(out, EncoderOutput)
    assert out.tokens.shape == (4, 10, 32) and out.pooled.shape == (4, 32)
    assert out.mask.dtype == torch.bool
    assert out.mask.sum(dim=1).tolist() == [10, 6, 1, 1]  # ceil(L / 4)
    assert encoder.dim == out.dim == 32


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 8, 9, 13])
def test_subsampled_mask_equals_unpadded_conv_output_length(frames: int) -> None:
    subsample = ConvSubsampler(N_MELS, 8)
    alone, alone_mask = subsample(
        torch.randn(1, frames, N_MELS), torch.ones(1, frames, dtype=torch.bool)
    )
    assert alone.shape[1] == math.ceil(frames / 4) == int(alone_mask.sum())
    padded = torch.cat([torch.randn(1, frames, N_MELS), torch.randn(1, 11, N_MELS)], dim=1)
    mask = torch.arange(frames + 11)[None, :] < frames
    _, padded_mask = subsample(padded, mask)
    assert int(padded_mask.sum()) == math.ceil(frames / 4)
    assert bool(padded_mask[0, : math.ceil(frames / 4)].all())


def test_padding_does_not_change_valid_outputs(encoder: AudioTransformer) -> None:
    batch = _batch([37, 21], pad_value=1e3)  # huge padding must not leak through the convs
    short = {"features": batch["features"][1:, :21], "mask": batch["mask"][1:, :21]}
    padded_out, alone_out = encoder(batch), encoder(short)
    valid = int(alone_out.mask.sum())
    torch.testing.assert_close(
        padded_out.tokens[1, :valid], alone_out.tokens[0], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(padded_out.pooled[1], alone_out.pooled[0], atol=1e-5, rtol=1e-5)
    assert bool((padded_out.tokens[1, valid:] == 0).all())


def test_missing_mask_means_all_valid_and_unknown_keys_are_ignored(
    encoder: AudioTransformer,
) -> None:
    batch = _batch([12, 12])
    reference = encoder(batch)
    no_mask = encoder({"features": batch["features"]})
    extra = encoder({**batch, "present": torch.tensor([True, True])})
    torch.testing.assert_close(no_mask.tokens, reference.tokens)
    torch.testing.assert_close(extra.pooled, reference.pooled)


def test_clip_without_valid_frames_gives_zeros_not_nan(encoder: AudioTransformer) -> None:
    batch = _batch([9, 9])
    batch["mask"][1] = False
    out = encoder(batch)
    assert bool(torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all())
    assert not bool(out.mask[1].any())
    assert bool((out.pooled[1] == 0).all()) and bool((out.pooled[0] != 0).any())


def test_every_parameter_gets_a_gradient() -> None:
    encoder = AudioTransformer(_config()).train()
    out = encoder(_batch([17, 9]))
    (out.pooled.pow(2).sum() + out.tokens.sum()).backward()
    missing = [
        n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []
    assert all(
        bool(torch.isfinite(p.grad).all()) for p in encoder.parameters() if p.grad is not None
    )


def test_deterministic_for_a_seed_and_in_eval() -> None:
    batch = _batch([20, 13])
    torch.manual_seed(7)
    first = AudioTransformer(_config()).eval()
    torch.manual_seed(7)
    second = AudioTransformer(_config()).eval()
    torch.testing.assert_close(first(batch).tokens, second(batch).tokens, atol=0, rtol=0)
    torch.testing.assert_close(first(batch).pooled, first(batch).pooled, atol=0, rtol=0)


def test_gradient_checkpointing_keeps_outputs() -> None:
    encoder = AudioTransformer(_config()).train()
    batch = _batch([16, 10])
    expected = encoder(batch).tokens
    encoder.set_gradient_checkpointing(True)
    assert encoder.transformer.gradient_checkpointing
    torch.testing.assert_close(encoder(batch).tokens, expected)


def test_input_errors_name_the_problem(encoder: AudioTransformer) -> None:
    with pytest.raises(ValueError, match=r"max_positions=32.*processor\.max_seconds=1\.0"):
        encoder(_batch([200]))  # 50 positions after subsampling
    with pytest.raises(KeyError, match="'features'"):
        encoder({"mask": torch.ones(1, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match=f"n_mels={N_MELS}"):
        encoder({"features": torch.randn(1, 8, N_MELS + 1)})
    with pytest.raises(ValueError, match="does not match"):
        encoder({"features": torch.randn(1, 8, N_MELS), "mask": torch.ones(1, 7, dtype=torch.bool)})


def test_config_requires_positions_for_max_seconds() -> None:
    # 1 s = 100 frames = 25 positions: exactly enough, and a full-length clip runs.
    encoder = AudioTransformer(_config(max_positions=25)).eval()
    assert encoder(_batch([100])).tokens.shape == (1, 25, 32)
    with pytest.raises(ValidationError, match=r"max_positions=24 .*processor\.max_seconds=1\.0"):
        _config(max_positions=24)
    config = _config()
    with pytest.raises(ValidationError, match="max_positions=10"):
        config.max_positions = 10
    with pytest.raises(ValidationError, match="hop_length=160"):
        AudioProcessorConfig(max_seconds=0.001)


def test_registered_builders_run_end_to_end(
    monkeypatch: pytest.MonkeyPatch, media: dict[str, Callable[..., Path]]
) -> None:
    import omnifuse.modalities.audio  # noqa: F401  (registers the encoder)

    # Only the audio registration is under test; other modalities may not be importable yet.
    monkeypatch.setattr(registry, "_loaded", True)
    spec = registry.encoder_spec("audio", "conv_transformer")
    config = _config()
    processor = spec.build_processor(config)
    encoder = spec.build_encoder(config, processor, False)
    assert encoder.modality == processor.modality == "audio"
    paths = [
        media["wav"]("a.wav", seconds=0.5),
        media["wav"]("b.wav", seconds=0.3, sample_rate=8000),
    ]
    out = encoder.eval()(processor(paths))
    assert out.tokens.shape == (2, 13, 32)  # 50 frames -> 13 positions
    assert out.mask.sum(dim=1).tolist() == [13, 8]  # 30 frames -> 8
