"""Sampling helpers: option validation, top-k/top-p filters, greedy and seeded draws, guidance."""

from __future__ import annotations

import pytest
import torch

from omnifuse.layers.sampling import (
    SamplingOptions,
    guide,
    sample_next,
    top_k_filter,
    top_p_filter,
)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -0.1}, "temperature=-0.1"),
        ({"top_k": 0}, "top_k=0"),
        ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"guidance": -1.0}, "guidance=-1.0"),
    ],
)
def test_options_are_checked_once(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplingOptions(**kwargs)  # type: ignore[arg-type]


def test_top_k_keeps_exactly_k_per_row() -> None:
    logits = torch.randn(5, 50)
    filtered = top_k_filter(logits, 7)
    kept = torch.isfinite(filtered)
    assert kept.sum(dim=1).tolist() == [7] * 5
    top = logits.topk(7, dim=1).indices
    assert kept.gather(1, top).all()  # and they are the 7 largest
    assert torch.equal(filtered[kept], logits[kept])
    assert torch.isfinite(top_k_filter(logits, 500)).all()  # k beyond V keeps everything


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.05, 0.3, 0.15], [0.25, 0.25, 0.25, 0.25]]))
    kept = torch.isfinite(top_p_filter(logits, 0.75))
    assert kept[0].tolist() == [True, False, True, False]  # 0.5 + 0.3 >= 0.75
    assert kept[1].sum() == 3  # 0.75 needs three of the four equal tokens
    probs = logits.softmax(-1)
    for p in (0.1, 0.5, 0.9, 0.99):
        keep = torch.isfinite(top_p_filter(logits, p))
        mass = (probs * keep).sum(dim=1)
        smallest_kept = torch.where(keep, probs, torch.ones_like(probs)).min(dim=1).values
        assert (mass >= p - 1e-6).all()
        assert (mass - smallest_kept < p).all()  # minimal: dropping any kept token falls short
    assert torch.isfinite(top_p_filter(logits, 1e-4)).sum(dim=1).tolist() == [1, 1]


def test_greedy_and_top_k_one_take_the_argmax() -> None:
    logits = torch.randn(6, 30)
    assert torch.equal(sample_next(logits, SamplingOptions(temperature=0.0)), logits.argmax(-1))
    hot = SamplingOptions(temperature=5.0, top_k=1)
    assert torch.equal(sample_next(logits, hot), logits.argmax(-1))


def test_sampling_is_seeded_and_respects_the_filters() -> None:
    logits = torch.randn(4, 20)
    options = SamplingOptions(temperature=1.0, top_k=3)
    draws = [
        sample_next(logits, options, torch.Generator().manual_seed(7)).tolist() for _ in range(2)
    ]
    assert draws[0] == draws[1]
    allowed = logits.topk(3, dim=1).indices
    many = torch.stack([sample_next(logits, options) for _ in range(50)], dim=1)  # (4, 50)
    assert (many[:, :, None] == allowed[:, None, :]).any(-1).all()
    assert len(set(many.flatten().tolist())) > 4  # it does sample, not always the argmax


def test_guidance_scale_one_is_the_conditional_logits() -> None:
    cond, uncond = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.allclose(guide(cond, uncond, 1.0), cond)
    assert torch.allclose(guide(cond, uncond, 0.0), uncond)
    assert torch.allclose(guide(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
    assert not SamplingOptions().guided and SamplingOptions(guidance=2.0).guided
