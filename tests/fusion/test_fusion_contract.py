"""The fusion contract, checked for every registered fusion type and mode (see conftest.CASES)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch

from omnifuse.fusion.base import FusedOutput
from omnifuse.modalities.base import EncoderOutput

Batch = Callable[..., dict[str, EncoderOutput]]
MODALITIES = ("audio", "image", "text", "video")


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def assert_same_sample(out: FusedOutput, i: int, ref: FusedOutput, j: int) -> None:
    """Sample ``i`` of ``out`` equals sample ``j`` of ``ref`` on every shared output."""
    assert_close(out.pooled[i], ref.pooled[j])
    for m, vec in ref.modality_pooled.items():
        assert_close(out.modality_pooled[m][i], vec[j])
    assert_close(out.tokens[i][out.mask[i]], ref.tokens[j][ref.mask[j]])


def test_output_shapes(case: Any, batch: Batch) -> None:
    fusion = case.build().eval()
    out = fusion(batch())
    n = case.expected_length(MODALITIES)
    assert isinstance(out, FusedOutput)
    assert out.tokens.shape == (3, n, 32)
    assert out.mask.shape == (3, n) and out.mask.dtype == torch.bool
    assert out.pooled.shape == (3, 32)
    assert sorted(out.modality_pooled) == list(MODALITIES)
    assert all(v.shape == (3, 32) for v in out.modality_pooled.values())


def test_every_modality_subset(case: Any, batch: Batch) -> None:
    fusion = case.build().eval()
    for k in range(1, len(MODALITIES) + 1):
        for subset in itertools.combinations(MODALITIES, k):
            out = fusion(batch(subset))
            assert out.tokens.shape == (3, case.expected_length(subset), 32), subset
            assert sorted(out.modality_pooled) == list(subset)
            fields = [out.tokens, out.pooled, *out.modality_pooled.values()]
            assert all(torch.isfinite(t).all() for t in fields), subset


def test_dict_order_does_not_matter(case: Any, batch: Batch) -> None:
    fusion = case.build().eval()
    encoded = batch()
    out = fusion(encoded)
    flipped = fusion(dict(reversed(list(encoded.items()))))
    assert torch.equal(out.tokens, flipped.tokens) and torch.equal(out.mask, flipped.mask)
    assert torch.equal(out.pooled, flipped.pooled)
    assert all(torch.equal(v, flipped.modality_pooled[m]) for m, v in out.modality_pooled.items())


def _repad(e: EncoderOutput, extra: int) -> EncoderOutput:
    """Append ``extra`` masked positions and put NaN at every masked position."""
    b, _, d = e.tokens.shape
    tokens = torch.cat([e.tokens, torch.zeros(b, extra, d)], dim=1)
    mask = torch.cat([e.mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1)
    return EncoderOutput(tokens.masked_fill(~mask[..., None], float("nan")), mask, e.pooled)


def test_padding_does_not_change_outputs(case: Any, batch: Batch) -> None:
    fusion = case.build().eval()
    encoded = batch()
    out = fusion(encoded)
    padded = fusion({m: _repad(e, extra=3) for m, e in encoded.items()})
    for i in range(3):
        assert_same_sample(padded, i, out, i)
    assert torch.isfinite(padded.tokens).all()
    assert (padded.tokens[~padded.mask] == 0).all()  # padding comes out as exact zeros


def test_sample_missing_a_modality_equals_running_it_without(case: Any, batch: Batch) -> None:
    fusion = case.build().eval()
    encoded = batch()
    img = encoded["image"]
    img.mask[1] = False
    img.tokens[1] = float("nan")  # whatever an encoder emits for an absent input is never read
    img.pooled[1] = float("nan")
    out = fusion(encoded)
    alone = {
        m: EncoderOutput(e.tokens[1:2], e.mask[1:2], e.pooled[1:2]) for m, e in encoded.items()
    }
    del alone["image"]
    assert_same_sample(out, 1, fusion(alone), 0)
    assert (out.modality_pooled["image"][1] == 0).all()
    assert all(torch.isfinite(v).all() for v in [out.tokens, *out.modality_pooled.values()])


def test_sample_with_nothing_is_finite_and_isolated(case: Any, batch: Batch) -> None:
    fusion = case.build().eval()
    encoded = batch()
    for e in encoded.values():
        e.mask[0] = False
    out = fusion(encoded)
    rest = fusion(
        {m: EncoderOutput(e.tokens[1:], e.mask[1:], e.pooled[1:]) for m, e in encoded.items()}
    )
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    for i in (1, 2):
        assert_same_sample(out, i, rest, i - 1)


def test_sample_with_nothing_gets_the_documented_pooled(case: Any, batch: Batch) -> None:
    encoded = batch()
    for e in encoded.values():
        e.mask[:2] = False  # samples 0 and 1 have nothing, with different garbage inputs
    out = case.build().eval()(encoded)
    assert torch.equal(out.pooled[0], out.pooled[1])  # input-independent
    if case.empty_pooled_is_zero:
        assert (out.pooled[:2] == 0).all()
    else:  # concat's [CLS] / the resampler's latents still produce a (constant) vector
        assert (out.pooled[0] != 0).any()


def test_every_parameter_gets_a_gradient(case: Any, batch: Batch) -> None:
    fusion = case.build().train()
    out = fusion(batch())
    gen = torch.Generator().manual_seed(1)
    # Random weights, not a plain sum: the sum of a LayerNorm output has zero gradient.
    fields = [out.tokens, out.pooled, *out.modality_pooled.values()]
    loss = sum((t * torch.randn(t.shape, generator=gen)).sum() for t in fields)
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    missing = [n for n, p in fusion.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_same_seed_same_output(case: Any, batch: Batch) -> None:
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outputs.append(case.build().eval()(batch()).pooled)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2])


def test_rejects_unknown_or_no_modality(case: Any, batch: Batch) -> None:
    fusion = case.build()
    encoded = batch(["text"])
    encoded["depth"] = encoded["text"]
    with pytest.raises(ValueError, match=r"\['depth'\].*configured: \['audio', 'image'"):
        fusion(encoded)
    with pytest.raises(ValueError, match="at least one of"):
        fusion({})


def test_rejects_mismatched_batches(case: Any, batch: Batch) -> None:
    fusion = case.build()
    encoded = {**batch(["text"]), **batch(["image"], batch=2)}
    with pytest.raises(ValueError, match=r"batch size: \{'image': 2, 'text': 3\}"):
        fusion(encoded)


def test_gradient_checkpointing_keeps_outputs_and_gradients(case: Any, batch: Batch) -> None:
    fusion = case.build().train()  # dropout is 0, so train mode is deterministic
    flags = [m for m in fusion.modules() if hasattr(m, "gradient_checkpointing")]
    if case.name.startswith("parallel"):
        assert flags == []  # nothing deep to checkpoint in late fusion
        return
    assert flags
    results = []
    for enabled in (False, True):
        for module in flags:
            module.gradient_checkpointing = enabled
        fusion.zero_grad()
        out = fusion(batch())
        (out.pooled * torch.arange(32.0)).sum().backward()
        grads = [p.grad.clone() for p in fusion.parameters() if p.grad is not None]
        results.append((out.pooled.detach(), grads))
    assert_close(results[0][0], results[1][0])
    assert len(results[0][1]) == len(results[1][1])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert_close(a, b)
