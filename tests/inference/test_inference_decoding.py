"""Decoding strategies: greedy == beam 1 == nucleus(top_p -> 0), beam search finds the best
sequence where greedy does not, KV-cache beam == uncached beam, options are verified."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import Tensor

from omnifuse.config.heads import CaptionDecoderConfig
from omnifuse.heads import CaptionDecoder
from omnifuse.inference import (
    DecoderStepper,
    DecodingOptions,
    InferenceError,
    TokenIds,
    beam_search,
    decode,
    greedy_search,
)
from omnifuse.layers.sampling import top_p_filter
from omnifuse.modalities.base import EncoderOutput

VOCAB, BOS, EOS, PAD = 40, 5, 6, 0


def caption_decoder(max_length: int = 10) -> CaptionDecoder:
    config = CaptionDecoderConfig(dim=32, num_layers=2, num_heads=2, max_length=max_length)
    return CaptionDecoder(24, VOCAB, config, BOS, EOS, PAD).eval()


def context(batch: int = 3) -> EncoderOutput:
    tokens = torch.randn(batch, 7, 24)
    mask = torch.ones(batch, 7, dtype=torch.bool)
    mask[0, 4:] = False
    return EncoderOutput(tokens, mask, tokens.mean(1))


class TableDecoder:
    """A hand-built decoder: the next-token distribution depends only on the last token.

    Ids: 0 BOS, 1 EOS, 2 PAD, then ordinary tokens. ``table[last]`` holds probabilities.
    """

    bos_id, eos_id, pad_id = 0, 1, 2

    def __init__(self, table: dict[int, list[float]], max_length: int) -> None:
        self.table = table
        self.max_length = max_length

    def new_cache(self, static: bool = False) -> list[int]:
        return []

    def step(self, tokens: Tensor, cache: Any, fused: EncoderOutput) -> Tensor:
        rows = [self.table.get(int(t), self.table[self.eos_id]) for t in tokens[:, -1]]
        return torch.tensor(rows).log()  # (N, V); log(0) = -inf: never chosen

    def reorder_cache(self, cache: Any, index: Tensor) -> Any:
        return cache


def table_context(batch: int = 1) -> EncoderOutput:
    return EncoderOutput(
        torch.zeros(batch, 1, 4), torch.ones(batch, 1, dtype=torch.bool), torch.zeros(batch, 4)
    )


def score(table: dict[int, list[float]], sequence: tuple[int, ...], alpha: float) -> float:
    """Length-normalised log-probability of ``sequence`` (without BOS) under a table decoder."""
    logp, last = 0.0, 0
    for token in sequence:
        logp += math.log(table[last][token])
        last = token
    return logp / math.pow(len(sequence), alpha)


def test_beam_width_one_is_greedy_with_and_without_cache() -> None:
    head, fused = caption_decoder(), context()
    with torch.no_grad():
        greedy = head.generate(fused)
        for cache in (True, False):
            beam = decode(head, fused, DecodingOptions("beam", beam_size=1, use_cache=cache))
            assert torch.equal(beam.tokens, greedy)
        assert torch.equal(decode(head, fused, DecodingOptions("greedy")).tokens, greedy)
    assert len(set(greedy.flatten().tolist())) > 1, "random weights give varied tokens"


def test_nucleus_with_tiny_top_p_is_greedy() -> None:
    head, fused = caption_decoder(), context()
    with torch.no_grad():
        greedy = head.generate(fused)
        nucleus = decode(head, fused, DecodingOptions("nucleus", top_p=1e-6, temperature=0.7))
    assert torch.equal(nucleus.tokens, greedy)


def test_nucleus_sampling_is_seeded() -> None:
    head, fused = caption_decoder(), context()

    def hot(seed: int) -> DecodingOptions:
        return DecodingOptions("nucleus", top_p=1.0, temperature=5.0, seed=seed)

    with torch.no_grad():
        first = decode(head, fused, hot(1)).tokens
        again = decode(head, fused, hot(1)).tokens
        other = decode(head, fused, hot(2)).tokens
        greedy = head.generate(fused)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, greedy)


def test_cached_beam_search_equals_uncached() -> None:
    head, fused = caption_decoder(), context()
    with torch.no_grad():
        cached = decode(head, fused, DecodingOptions("beam", beam_size=3))
        uncached = decode(head, fused, DecodingOptions("beam", beam_size=3, use_cache=False))
        greedy = head.generate(fused)
    assert torch.equal(cached.tokens, uncached.tokens)
    torch.testing.assert_close(cached.scores, uncached.scores, atol=1e-5, rtol=1e-5)
    assert not torch.equal(cached.tokens, greedy), "3 beams should find other sequences here"


def test_beam_search_beats_greedy_on_a_hand_built_decoder() -> None:
    # From BOS: A 0.6, B 0.4. After A: EOS 0.4 (A, B 0.3). After B: EOS 0.9.
    # Greedy takes A then EOS (mean log-prob -0.71); the best sequence is B EOS (-0.51).
    table = {
        0: [0.0, 0.0, 0.0, 0.6, 0.4],
        3: [0.0, 0.4, 0.0, 0.3, 0.3],
        4: [0.0, 0.9, 0.0, 0.05, 0.05],
        1: [0.0, 1.0, 0.0, 0.0, 0.0],
    }
    decoder = TableDecoder(table, max_length=4)
    ids = TokenIds(0, 1, 2)
    greedy = greedy_search(DecoderStepper(decoder, table_context(), True), 1, ids, 4)
    beam = beam_search(DecoderStepper(decoder, table_context(), True), 1, ids, 4, beam_size=2)
    assert greedy.tokens.tolist() == [[3, 1]]
    assert beam.tokens.tolist() == [[4, 1]]
    assert float(beam.scores[0]) == pytest.approx((math.log(0.4) + math.log(0.9)) / 2)


def test_wide_beam_search_finds_the_best_sequence_by_brute_force() -> None:
    gen = torch.Generator().manual_seed(3)
    table = {}
    for last in (0, 3, 4, 5):
        probs = torch.rand(4, generator=gen)
        probs /= probs.sum()
        table[last] = [0.0, float(probs[0]), 0.0, *map(float, probs[1:])]  # no BOS/PAD
    table[1] = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    steps, alpha = 3, 0.7
    candidates = [
        (*body, 1) for n in range(steps) for body in itertools.product((3, 4, 5), repeat=n)
    ]
    candidates += list(itertools.product((3, 4, 5), repeat=steps))  # cut at max length
    best = max(candidates, key=lambda seq: score(table, seq, alpha))
    stepper = DecoderStepper(TableDecoder(table, steps), table_context(2), True)
    out = beam_search(stepper, 2, TokenIds(0, 1, 2), steps, beam_size=30, length_penalty=alpha)
    for row in out.tokens.tolist():
        assert tuple(t for t in row if t != 2) == best
    assert float(out.scores[0]) == pytest.approx(score(table, best, alpha))


def test_nucleus_filter_keeps_the_smallest_set_reaching_top_p() -> None:
    logits = torch.tensor([0.2, 0.5, 0.3]).log()
    assert torch.isfinite(top_p_filter(logits, 0.6)).tolist() == [False, True, True]
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [False, True, False]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()


def test_step_rejects_a_cache_of_the_wrong_length() -> None:
    head, fused = caption_decoder(), context()
    cache = head.new_cache()
    with torch.no_grad():
        head.step(torch.full((3, 1), BOS), cache, fused)
        with pytest.raises(ValueError, match="the cache holds 1 positions but the prefix has 3"):
            head.step(torch.full((3, 3), BOS), cache, fused)


def test_max_length_option_caps_the_output() -> None:
    head, fused = caption_decoder(), context()
    with torch.no_grad():
        for strategy in ("greedy", "beam", "nucleus"):
            out = decode(head, fused, DecodingOptions(strategy, max_length=3))
            assert out.tokens.shape[0] == 3 and out.tokens.shape[1] <= 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "topk"}, "strategy='topk'; valid choices: 'greedy', 'beam', 'nucleus'"),
        ({"beam_size": 0}, "beam_size=0 must be >= 1"),
        ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
        ({"temperature": 0.0}, "temperature=0.0 must be > 0"),
        ({"max_length": 0}, "max_length=0 must be >= 1"),
    ],
)
def test_decoding_options_are_verified(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InferenceError, match=message):
        DecodingOptions(**options)
