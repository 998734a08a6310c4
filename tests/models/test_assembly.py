"""Every fusion x modality combination builds from config and trains on real files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from omnifuse import create_model
from omnifuse.models import MultimodalModel, Processors

FUSIONS = {
    "concat": ["model.fusion.type=concat"],
    "parallel-gated": ["model.fusion={type: parallel, dim: 32, pooling: gated}"],
    "parallel-attention": [
        "model.fusion={type: parallel, dim: 32, pooling: attention, num_heads: 2}"
    ],
    "hybrid-co_attention": ["model.fusion.type=hybrid", "model.fusion.mode=co_attention"],
    "hybrid-resampler": [
        "model.fusion.type=hybrid",
        "model.fusion.mode=resampler",
        "model.fusion.num_queries=4",
    ],
}
COMBOS = [
    ("text",),
    ("image",),
    ("audio",),
    ("video",),
    ("image", "text"),
    ("audio", "text"),
    ("text", "video"),
    ("audio", "image", "text", "video"),
]
ALL = ("audio", "image", "text", "video")


def only(modalities: tuple[str, ...]) -> list[str]:
    """Overrides removing the encoders (and heads) not in ``modalities`` from the tiny preset."""
    drop = [f"model.encoders.{m}=null" for m in ALL if m not in modalities]
    return drop


def raw_inputs(media: dict[str, Callable[..., Path]]) -> dict[str, list[Any]]:
    """Two samples per modality, written as real files, of different lengths."""
    return {
        "text": ["a red circle left of a blue square", "two stars"],
        "image": [media["png"]("a.png"), media["png"]("b.png", size=(30, 50), seed=1)],
        "audio": [
            media["wav"]("a.wav", seconds=0.6),
            media["wav"]("b.wav", seconds=0.3, sample_rate=8000),
        ],
        "video": [media["mp4"]("a.mp4", frames=10), media["mp4"]("b.mp4", frames=3)],
    }


def make_batch(processors: Processors, raws: dict[str, list[Any]]) -> dict[str, Any]:
    return {m: p(raws[m]) for m, p in processors.items()}


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("modalities", COMBOS, ids=lambda c: "+".join(c))
def test_fusion_by_modalities_forward_backward(
    fusion: str, modalities: tuple[str, ...], media: dict[str, Callable[..., Path]]
) -> None:
    model, processors = create_model("tiny", FUSIONS[fusion] + only(modalities))
    assert sorted(processors) == sorted(modalities)
    batch = make_batch(processors, raw_inputs(media))
    out = model(batch)
    assert out.fused.pooled.shape == (2, model.fusion.dim)
    assert out.fused.tokens.shape[:2] == out.fused.mask.shape
    assert torch.isfinite(out.fused.tokens).all() and torch.isfinite(out.fused.pooled).all()
    assert out.heads["classify"].shape == (2, 4)
    loss = out.heads["classify"].logsumexp(-1).sum() + out.heads["embed"].sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_missing_modality_in_batch_is_handled(media: dict[str, Callable[..., Path]]) -> None:
    """A batch may hold any subset of the configured modalities."""
    model, processors = create_model("tiny")
    raws = raw_inputs(media)
    model.eval()
    for subset in [("text",), ("image", "video"), ("audio",)]:
        out = model({m: processors[m](raws[m]) for m in subset})
        assert sorted(out.encoded) == sorted(subset)
        assert torch.isfinite(out.fused.pooled).all()


def test_present_mask_removes_a_sample_modality(media: dict[str, Callable[..., Path]]) -> None:
    """A sample marked absent for a modality gets the same output as a batch without it."""
    model, processors = create_model("tiny", only(("image", "text")))
    model.eval()
    raws = raw_inputs(media)
    text, image = processors["text"](raws["text"][:1]), processors["image"](raws["image"][:1])
    alone = model({"text": text}).fused.pooled
    image["present"] = torch.tensor([False])
    masked = model({"text": text, "image": image}).fused.pooled
    torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-5)


def test_unknown_modality_in_batch_is_an_error(media: dict[str, Callable[..., Path]]) -> None:
    model, processors = create_model("tiny", only(("text",)))
    with pytest.raises(ValueError, match=r"no encoder for; configured: \['text'\]"):
        model(
            {
                "text": processors["text"](["hi"]),
                "image": {"pixel_values": torch.zeros(1, 3, 32, 32)},
            }
        )


def test_gradient_checkpointing_keeps_outputs(media: dict[str, Callable[..., Path]]) -> None:
    model, processors = create_model("tiny")
    batch = make_batch(processors, raw_inputs(media))
    model.train()
    torch.manual_seed(0)
    plain = model(batch).fused.pooled
    model.set_gradient_checkpointing(True)
    torch.manual_seed(0)
    checkpointed = model(batch).fused.pooled
    torch.testing.assert_close(plain, checkpointed)
    checkpointed.sum().backward()


def test_model_is_built_from_parts() -> None:
    model, _ = create_model("tiny")
    assert isinstance(model, MultimodalModel)
    assert model.modalities == ["audio", "image", "text", "video"]
    assert sorted(model.heads) == ["classify", "embed"]
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
