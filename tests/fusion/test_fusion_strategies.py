"""What each fusion strategy promises beyond the shared contract, its config, and registration."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from omnifuse import registry
from omnifuse.config.fusion import (
    ConcatFusionConfig,
    FusionConfig,
    HybridFusionConfig,
    ParallelFusionConfig,
)
from omnifuse.fusion.base import Fusion
from omnifuse.fusion.concat import build_concat
from omnifuse.fusion.hybrid import CoAttentionFusion, ResamplerFusion, build_hybrid
from omnifuse.fusion.parallel import ParallelFusion, build_parallel
from omnifuse.modalities.base import EncoderOutput

Batch = Callable[..., dict[str, EncoderOutput]]
DIMS = {"image": 48, "text": 32}
SMALL = {"dim": 32, "num_layers": 1, "num_heads": 4, "mlp_ratio": 2.0}


def _parallel(pooling: str) -> Fusion:
    return build_parallel(ParallelFusionConfig(dim=32, pooling=pooling), DIMS).eval()


def _perturb_image(encoded: dict[str, EncoderOutput]) -> dict[str, EncoderOutput]:
    img = encoded["image"]
    return {**encoded, "image": EncoderOutput(img.tokens + 1.0, img.mask, img.pooled + 1.0)}


# ----------------------------------------------------------------------------- concat


def test_concat_pooled_is_the_cls_output_and_modalities_interact(batch: Batch) -> None:
    fusion = build_concat(ConcatFusionConfig(**SMALL), DIMS).eval()
    encoded = batch(DIMS)
    out = fusion(encoded)
    assert torch.equal(out.pooled, out.tokens[:, 0]) and out.mask[:, 0].all()
    changed = fusion(_perturb_image(encoded))
    # Early fusion: the text segment sees the image, so its summary moves with it.
    assert not torch.allclose(out.modality_pooled["text"], changed.modality_pooled["text"])


def test_concat_segments_follow_sorted_modality_order(batch: Batch) -> None:
    fusion = build_concat(ConcatFusionConfig(**SMALL), DIMS).eval()
    encoded = batch(DIMS)
    out = fusion(encoded)
    image_len = encoded["image"].mask.shape[1]
    assert torch.equal(out.mask[:, 1 : 1 + image_len], encoded["image"].mask)  # image before text
    assert torch.equal(out.mask[:, 1 + image_len :], encoded["text"].mask)


# ----------------------------------------------------------------------------- parallel


@pytest.mark.parametrize("pooling", ["gated", "attention", "mean"])
def test_parallel_streams_do_not_interact(pooling: str, batch: Batch) -> None:
    fusion = _parallel(pooling)
    encoded = batch(DIMS)
    out, changed = fusion(encoded), fusion(_perturb_image(encoded))
    text_len = encoded["text"].mask.shape[1]
    assert torch.equal(out.modality_pooled["text"], changed.modality_pooled["text"])
    assert torch.equal(out.tokens[:, -text_len:], changed.tokens[:, -text_len:])
    assert not torch.allclose(out.pooled, changed.pooled)  # only the final combination mixes


def test_parallel_modality_pooled_is_the_projected_encoder_vector(batch: Batch) -> None:
    fusion = _parallel("mean")
    encoded = batch(DIMS)
    out = fusion(encoded)
    assert torch.equal(out.modality_pooled["text"], encoded["text"].pooled)  # 32 -> 32: identity
    expected = fusion.input_proj["image"](encoded["image"].pooled)
    torch.testing.assert_close(out.modality_pooled["image"], expected)


def test_parallel_mean_averages_only_present_modalities(batch: Batch) -> None:
    fusion = _parallel("mean")
    encoded = batch(DIMS)
    encoded["image"].mask[2] = False
    out = fusion(encoded)
    vecs = out.modality_pooled
    torch.testing.assert_close(out.pooled[:2], (vecs["image"][:2] + vecs["text"][:2]) / 2)
    torch.testing.assert_close(out.pooled[2], vecs["text"][2])


def test_parallel_gated_is_a_convex_combination(batch: Batch) -> None:
    fusion = _parallel("gated")
    assert isinstance(fusion, ParallelFusion)
    encoded = batch(DIMS)
    out = fusion(encoded)
    gates = fusion.pool.gates
    scores = torch.cat(
        [gates["image"](out.modality_pooled["image"]), gates["text"](out.modality_pooled["text"])],
        1,
    )
    w = scores.softmax(dim=1)
    expected = w[:, :1] * out.modality_pooled["image"] + w[:, 1:] * out.modality_pooled["text"]
    torch.testing.assert_close(out.pooled, expected)
    solo = fusion(batch(["text"]))
    torch.testing.assert_close(solo.pooled, solo.modality_pooled["text"])  # one modality: weight 1


@pytest.mark.parametrize("pooling", ["gated", "attention", "mean"])
def test_parallel_sample_with_nothing_pools_to_zero(pooling: str, batch: Batch) -> None:
    encoded = batch(DIMS)
    for e in encoded.values():
        e.mask[1] = False
    out = _parallel(pooling)(encoded)
    assert (out.pooled[1] == 0).all() and (out.pooled[0] != 0).any()


def test_parallel_dropout_acts_in_training_only(batch: Batch) -> None:
    fusion = build_parallel(ParallelFusionConfig(dim=32, pooling="mean", dropout=0.5), DIMS)
    encoded = batch(DIMS)
    first = fusion.eval()(encoded).pooled
    assert torch.equal(first, fusion(encoded).pooled)
    assert not torch.allclose(first, fusion.train()(encoded).pooled)


# ----------------------------------------------------------------------------- hybrid


def test_co_attention_streams_interact_and_pooled_is_their_mean(batch: Batch) -> None:
    fusion = build_hybrid(HybridFusionConfig(mode="co_attention", **SMALL), DIMS).eval()
    assert isinstance(fusion, CoAttentionFusion)
    encoded = batch(DIMS)
    out = fusion(encoded)
    changed = fusion(_perturb_image(encoded))
    assert not torch.allclose(out.modality_pooled["text"], changed.modality_pooled["text"])
    mean = (out.modality_pooled["image"] + out.modality_pooled["text"]) / 2
    torch.testing.assert_close(out.pooled, mean)


def test_co_attention_alone_equals_others_fully_masked(batch: Batch) -> None:
    fusion = build_hybrid(HybridFusionConfig(mode="co_attention", **SMALL), DIMS).eval()
    encoded = batch(DIMS)
    encoded["image"].mask[:] = False  # present in the dict, absent in every sample
    with_masked = fusion(encoded)
    alone = fusion({"text": encoded["text"]})
    torch.testing.assert_close(with_masked.modality_pooled["text"], alone.modality_pooled["text"])
    torch.testing.assert_close(with_masked.pooled, alone.pooled)


def test_resampler_outputs_latents(batch: Batch) -> None:
    config = HybridFusionConfig(mode="resampler", num_queries=5, **SMALL)
    fusion = build_hybrid(config, DIMS).eval()
    assert isinstance(fusion, ResamplerFusion)
    encoded = batch(DIMS)
    out = fusion(encoded)
    assert out.tokens.shape == (3, 5, 32) and out.mask.all()
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    assert torch.equal(out.modality_pooled["text"], encoded["text"].pooled)
    assert not torch.allclose(out.pooled, fusion(_perturb_image(encoded)).pooled)


# ----------------------------------------------------------------------------- config, registry


def test_parallel_attention_heads_must_divide_dim() -> None:
    with pytest.raises(ValidationError, match="dim=30 divisible by num_heads=4"):
        ParallelFusionConfig(dim=30, pooling="attention", num_heads=4)
    assert ParallelFusionConfig(dim=30, pooling="mean").num_heads == 4  # unused: not checked


def test_fusion_config_is_discriminated_by_type() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(FusionConfig)
    config = adapter.validate_python({"type": "hybrid", "mode": "resampler", "num_queries": 3})
    assert isinstance(config, HybridFusionConfig) and config.num_queries == 3
    with pytest.raises(ValidationError, match="co_attention"):
        adapter.validate_python({"type": "hybrid", "mode": "coattention"})


def test_builders_reject_empty_input_dims() -> None:
    with pytest.raises(ValueError, match="input_dims is empty"):
        build_concat(ConcatFusionConfig(**SMALL), {})


def test_registry_maps_types_to_builders_and_cases_cover_every_mode(all_cases: list[Any]) -> None:
    assert set(registry.list_fusions()) == {"concat", "parallel", "hybrid"}
    assert registry.fusion_builder("concat") is build_concat
    assert registry.fusion_builder("parallel") is build_parallel
    assert registry.fusion_builder("hybrid") is build_hybrid
    covered = {
        (c.config.type, getattr(c.config, "mode", getattr(c.config, "pooling", "")))
        for c in all_cases
    }
    pooling = typing.get_args(ParallelFusionConfig.model_fields["pooling"].annotation)
    modes = typing.get_args(HybridFusionConfig.model_fields["mode"].annotation)
    expected = (
        {("concat", "")} | {("parallel", p) for p in pooling} | {("hybrid", m) for m in modes}
    )
    assert covered == expected


def test_package_exports_strategies_lazily() -> None:
    import omnifuse.fusion as fusion_pkg

    assert fusion_pkg.ResamplerFusion is ResamplerFusion
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = fusion_pkg.Nope
