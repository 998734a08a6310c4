"""Autoregressive code prior: teacher forcing, overfitting, cached = uncached decoding, guidance."""

from __future__ import annotations

import pytest
import torch

from omnifuse.config.video_generator import VideoPriorConfig
from omnifuse.heads.video_prior import VideoPrior, null_condition
from omnifuse.layers.sampling import SamplingOptions
from omnifuse.modalities.base import EncoderOutput
from video_helpers import one_thread  # noqa: F401 - autouse fixture

GRID = (2, 3, 3)  # 18 codes per clip
CODES = 12


def tiny_prior(dropout: float = 0.0) -> VideoPrior:
    config = VideoPriorConfig(dim=32, num_layers=2, num_heads=2, dropout=dropout)
    return VideoPrior(CODES, GRID, context_dim=16, config=config)


def condition(batch: int = 2, length: int = 5) -> EncoderOutput:
    tokens = torch.randn(batch, length, 16)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, -2:] = False  # a padded condition
    return EncoderOutput(tokens, mask, tokens.mean(1))


def overfit(
    prior: VideoPrior, context: EncoderOutput, codes: torch.Tensor, steps: int
) -> list[float]:
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        logits = prior(context, codes)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_teacher_forcing_is_causal() -> None:
    prior = tiny_prior().eval()
    context = condition()
    codes = torch.randint(CODES, (2, 18))
    logits = prior(context, codes)
    assert logits.shape == (2, 18, CODES)
    changed = codes.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % CODES
    other = prior(context, changed)
    # Position i reads codes < i only: changing code 10 onwards leaves logits 0..10 alone.
    assert torch.allclose(logits[:, :11], other[:, :11], atol=1e-5)
    assert not torch.allclose(logits[:, 11:], other[:, 11:], atol=1e-3)


def test_prior_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    prior = tiny_prior()
    context, codes = condition(), torch.randint(CODES, (2, 18))
    losses = overfit(prior, context, codes, steps=80)
    assert losses[-1] < losses[0] / 3, (losses[0], losses[-1])


def test_cached_greedy_sampling_equals_uncached() -> None:
    torch.manual_seed(0)
    prior = tiny_prior()
    context = condition(3)
    overfit(prior, context, torch.randint(CODES, (3, 18)), steps=20)  # non-trivial logits
    prior.eval()
    for options in (SamplingOptions(temperature=0.0), SamplingOptions(0.0, guidance=2.5)):
        cached = prior.sample(context, options, use_cache=True)
        uncached = prior.sample(context, options, use_cache=False)
        assert cached.shape == (3, 18) and cached.dtype == torch.long
        assert torch.equal(cached, uncached)


def test_guided_sampling_uses_the_unconditional_pass() -> None:
    torch.manual_seed(0)
    prior = tiny_prior()
    context = condition(2)
    codes = torch.randint(CODES, (2, 18))
    # Every row looks the same without its condition, so they share one unconditional sequence.
    null_codes = torch.randint(CODES, (1, 18)).expand(2, -1)
    # Teach different sequences with and without the condition.
    both = EncoderOutput(
        torch.cat([context.tokens, context.tokens]),
        torch.cat([context.mask, null_condition(context).mask]),
        torch.cat([context.pooled, context.pooled]),
    )
    overfit(prior, both, torch.cat([codes, null_codes]), steps=150)
    prior.eval()
    greedy = SamplingOptions(temperature=0.0)
    assert torch.equal(prior.sample(context, greedy), codes)
    assert torch.equal(prior.sample(null_condition(context), greedy), null_codes)
    # guidance 0 is the unconditional model alone
    assert torch.equal(prior.sample(context, SamplingOptions(0.0, guidance=0.0)), null_codes)


def test_seeded_sampling_is_reproducible() -> None:
    prior = tiny_prior().eval()
    context = condition()
    options = SamplingOptions(temperature=1.0, top_p=0.9)
    first = prior.sample(context, options, torch.Generator().manual_seed(3))
    second = prior.sample(context, options, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_input_beyond_the_grid_is_refused() -> None:
    prior = tiny_prior()
    with pytest.raises(ValueError, match="reaches position 19; a clip has 18 codes"):
        prior.logits(torch.zeros(1, 19, dtype=torch.long), condition(1))


def test_static_cache_sampling_and_step_logits_equal_the_uncached_ones() -> None:
    """The lean cached step (static cache) gives the full pass's logits and, under one seed,
    the same sampled codes as sampling without a cache, guided or not."""
    torch.manual_seed(0)
    prior = tiny_prior().eval()
    context = condition(3)
    inputs = prior.shift(torch.randint(CODES, (3, 18)))
    full = prior.logits(inputs, context)  # (B, N, K)
    cache = prior.decoder.new_cache(prior.num_tokens)
    steps = torch.stack([prior.step(inputs[:, i : i + 1], context, cache, i) for i in range(18)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=0)
    for options in (SamplingOptions(1.0, top_p=0.9), SamplingOptions(1.0, guidance=2.0)):
        cached = prior.sample(context, options, torch.Generator().manual_seed(5))
        uncached = prior.sample(context, options, torch.Generator().manual_seed(5), use_cache=False)
        assert torch.equal(cached, uncached)
