"""Contract tests over the whole registry: every registered encoder and fusion honours the same
contract (shapes, masks, padding invariance, no NaN, gradients everywhere, determinism)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

from omnifuse.config.fusion import FusionConfig
from omnifuse.config.model import EncodersConfig
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.registry import encoder_spec, fusion_builder, list_encoders, list_fusions

TINY_ENCODERS: dict[tuple[str, str], dict[str, Any]] = {
    ("text", "transformer"): {"dim": 32, "num_layers": 2, "num_heads": 2},
    ("text", "hf"): {},  # path filled from the tiny_hf_bert_dir fixture
    ("image", "hf"): {},  # path: the tiny CLIP vision tower of tiny_hf_towers
    ("audio", "hf"): {},  # path: the tiny Whisper of tiny_hf_towers
    ("video", "hf"): {"num_frames": 4},  # path: the tiny CLIP vision tower, frame by frame
    ("image", "vit"): {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 2,
        "patch_size": 8,
        "processor": {"image_size": 32},
    },
    ("audio", "conv_transformer"): {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 2,
        "processor": {"n_mels": 32, "max_seconds": 2.0},
    },
    ("video", "tubelet_vit"): {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 2,
        "patch_size": 8,
        "processor": {"num_frames": 4, "image_size": 32},
    },
}
TINY_FUSIONS: dict[str, list[dict[str, Any]]] = {
    "concat": [{"dim": 32, "num_layers": 2, "num_heads": 2}],
    "parallel": [{"dim": 32, "pooling": p} for p in ("gated", "attention", "mean")],
    "hybrid": [
        {"dim": 32, "num_layers": 2, "num_heads": 2, "mode": m, "num_queries": 4}
        for m in ("co_attention", "resampler")
    ],
}
STEMMED = {"vit", "tubelet_vit"}  # patch-embedding encoders: also checked with the conv stem
ENCODER_IDS = [f"{s.modality}/{s.type}" for s in list_encoders()] + [
    f"{s.modality}/{s.type}+conv" for s in list_encoders() if s.type in STEMMED
]


HF_TOWER = {"image": "clip", "audio": "whisper", "video": "clip"}


@pytest.fixture
def hf_dirs(tiny_hf_bert_dir: Path, tiny_hf_towers: dict[str, Path]) -> dict[str, Path]:
    """The local HF directory each modality's ``hf`` encoder loads in the contract tests."""
    return {"text": tiny_hf_bert_dir, **{m: tiny_hf_towers[k] for m, k in HF_TOWER.items()}}


def registered_encoder(key: str, hf_dirs: dict[str, Path]) -> tuple[Encoder, Processor[Any], str]:
    modality, name = key.split("/")
    type_, _, stem = name.partition("+")
    if (modality, type_) not in TINY_ENCODERS:
        pytest.fail(f"registered encoder {key} has no tiny config in TINY_ENCODERS: add one")
    cfg_dict = {"type": type_, **TINY_ENCODERS[(modality, type_)]}
    if stem:
        cfg_dict["stem"] = stem
    if type_ == "hf":
        cfg_dict["path"] = str(hf_dirs[modality])
    config = getattr(EncodersConfig.model_validate({modality: cfg_dict}), modality)
    spec = encoder_spec(modality, type_)
    torch.manual_seed(0)
    processor = spec.build_processor(config)
    return spec.build_encoder(config, processor, True), processor, modality


def two_raws(modality: str, media: dict[str, Callable[..., Path]]) -> list[Any]:
    """A short and a long input (the short one gets padded in a batch)."""
    return {
        "text": lambda: ["a red circle", "the big blue square moves slowly to the left"],
        "image": lambda: [media["png"]("a.png"), media["png"]("b.png", seed=2)],
        "audio": lambda: [media["wav"]("a.wav", seconds=0.3), media["wav"]("b.wav", seconds=1.0)],
        "video": lambda: [media["mp4"]("a.mp4", frames=2), media["mp4"]("b.mp4", frames=12)],
    }[modality]()


def check_output(out: EncoderOutput, batch: int, dim: int) -> None:
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == batch and out.tokens.shape[2] == dim
    assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == torch.bool
    assert out.pooled.shape == (batch, dim)
    assert out.mask.any(dim=1).all(), "every real sample has at least one valid token"
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


@pytest.mark.parametrize("key", ENCODER_IDS)
def test_encoder_contract(
    key: str, media: dict[str, Callable[..., Path]], hf_dirs: dict[str, Path]
) -> None:
    encoder, processor, modality = registered_encoder(key, hf_dirs)
    assert encoder.modality == modality
    raws = two_raws(modality, media)
    encoder.eval()
    batch_out = encoder(processor(raws))
    check_output(batch_out, 2, encoder.dim)
    # Padding must not change what a sample encodes to.
    alone = encoder(processor(raws[:1]))
    n = int(alone.mask[0].sum())
    valid = batch_out.mask[0]
    assert int(valid.sum()) == n
    torch.testing.assert_close(
        batch_out.tokens[0][valid], alone.tokens[0][alone.mask[0]], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(batch_out.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-4)
    # Deterministic.
    torch.testing.assert_close(encoder(processor(raws)).tokens, batch_out.tokens)


@pytest.mark.parametrize("key", ENCODER_IDS)
def test_encoder_every_parameter_gets_gradient(
    key: str, media: dict[str, Callable[..., Path]], hf_dirs: dict[str, Path]
) -> None:
    encoder, processor, modality = registered_encoder(key, hf_dirs)
    encoder.train()
    out = encoder(processor(two_raws(modality, media)))
    (out.tokens.pow(2).mean() + out.pooled.pow(2).mean()).backward()
    missing = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    # HF BERT's token-type embeddings only see type 0, but still get a gradient row.
    assert not missing, f"parameters without gradient: {missing}"


def fake_streams(dims: dict[str, int], lengths: dict[str, int]) -> dict[str, EncoderOutput]:
    out = {}
    for m, d in dims.items():
        n = lengths[m]
        mask = torch.ones(2, n, dtype=torch.bool)
        mask[0, n // 2 :] = False
        tokens = torch.randn(2, n, d)
        out[m] = EncoderOutput(tokens, mask, tokens.mean(1))
    return out


FUSION_CASES = [(t, i) for t in list_fusions() for i in range(len(TINY_FUSIONS.get(t, [None])))]


@pytest.mark.parametrize(("type_", "index"), FUSION_CASES)
def test_fusion_contract(type_: str, index: int) -> None:
    if type_ not in TINY_FUSIONS:
        pytest.fail(f"registered fusion {type_} has no tiny config in TINY_FUSIONS: add one")
    config = TypeAdapter(FusionConfig).validate_python(
        {"type": type_, **TINY_FUSIONS[type_][index]}
    )
    dims = {"audio": 24, "image": 40, "text": 32, "video": 16}
    fusion = fusion_builder(type_)(config, dims)
    streams = fake_streams(dims, {"audio": 6, "image": 5, "text": 7, "video": 4})
    out = fusion(streams)
    assert out.pooled.shape == (2, 32) and out.tokens.shape[2] == 32
    assert out.mask.shape == out.tokens.shape[:2]
    assert sorted(out.modality_pooled) == sorted(dims)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    reordered = fusion(dict(reversed(list(streams.items()))))
    torch.testing.assert_close(reordered.pooled, out.pooled)
    (out.pooled.pow(2).sum() + out.tokens.pow(2).mean()).backward()
    missing = [n for n, p in fusion.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    for subset in (["text"], ["audio", "video"]):
        part = fusion({m: streams[m] for m in subset})
        assert part.pooled.shape == (2, 32) and torch.isfinite(part.pooled).all()


def test_every_registered_component_has_a_contract_case() -> None:
    keys = {(s.modality, s.type) for s in list_encoders()}
    assert keys == set(TINY_ENCODERS)
    assert set(list_fusions()) == set(TINY_FUSIONS)
