"""Contract over the whole head registry: every registered head type has a tiny config, builds
through the model builder, gives finite outputs and sends a gradient to every parameter."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from omnifuse.config import load_config
from omnifuse.modalities.base import EncoderOutput
from omnifuse.models import build_model
from omnifuse.registry import list_heads

TINY_HEADS: dict[str, dict[str, Any]] = {
    "classification": {"num_classes": 3, "hidden_dim": 16},
    "token_classification": {"num_classes": 5, "hidden_dim": 16},
    "projection": {"dim": 16},
    "mlm": {"source": "text"},
    "reconstruction": {"source": "image"},
    "caption_decoder": {"dim": 16, "num_layers": 1, "num_heads": 2, "max_length": 8},
    "video_generator": {
        "source": "text",
        "tokenizer": {"stage_dims": [8, 8], "temporal_downsample": 2, "codebook_size": 8},
        "prior": {"dim": 16, "num_layers": 1, "num_heads": 2},
    },
    "causal_lm": {"projector": "linear"},  # + the path of a tiny Llama (tiny_lm_dirs)
    "whisper_decoder": {"source": "audio", "max_length": 8},  # + path: a tiny Whisper dir
}


def features(batch: int, length: int, dim: int) -> EncoderOutput:
    tokens = torch.randn(batch, length, dim)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, length // 2 :] = False
    return EncoderOutput(tokens, mask, tokens.mean(1))


def test_every_head_type_has_a_contract_case() -> None:
    assert set(list_heads()) == set(TINY_HEADS)


@pytest.mark.parametrize("type_", sorted(TINY_HEADS))
def test_head_contract(type_: str, request: pytest.FixtureRequest) -> None:
    spec = {"type": type_, **TINY_HEADS[type_]}
    if type_ == "causal_lm":
        spec["path"] = str(request.getfixturevalue("tiny_lm_dirs")["llama"])
    if type_ == "whisper_decoder":
        spec["path"] = str(request.getfixturevalue("tiny_whisper_asr"))
    model, _ = build_model(load_config("tiny", [f"model.heads.h={spec}"]).model)
    head = model.heads["h"]
    inputs = features(2, 17, 32)  # every tiny width (fusion, text, image) is 32
    # Decoders need their teacher-forced input to give (differentiable) logits.
    extra = {
        "caption_decoder": [torch.randint(7, 40, (2, 5))],
        "causal_lm": [torch.randint(3, 20, (2, 5))],
        "whisper_decoder": [torch.randint(7, 40, (2, 5))],
        "video_generator": [torch.randint(0, 8, (2, getattr(head, "num_tokens", 0)))],
    }.get(type_, [])
    out = head(inputs, *extra)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    loss = out.float().pow(2).mean()
    if type_ == "video_generator":  # stage 1 trains the VQ tokenizer on clips, not on features
        tokenizer = head.tokenizer
        size = (tokenizer.num_frames, 3, tokenizer.image_size, tokenizer.image_size)
        clip = torch.randn(2, *size)  # type: ignore[arg-type]
        vq = head.tokenizer(clip)  # type: ignore[operator]
        loss = loss + vq.reconstruction.pow(2).mean() + vq.commitment_loss
    loss.backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
