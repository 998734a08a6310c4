"""Every decoding fast path gives the same output: static KV cache == growing cache == no cache,
for greedy, beam search and seeded nucleus sampling, at batch 1 and 16 with rows ending at
different steps; and the lean one-token step gives the same logits as the full pass."""

from __future__ import annotations

import pytest
import torch

from omnifuse.config.heads import CaptionDecoderConfig
from omnifuse.heads import CaptionDecoder
from omnifuse.heads.decoding import DecoderStepper, DecodingOptions, decode
from omnifuse.layers import KVCache, StaticKVCache
from omnifuse.modalities.base import EncoderOutput

VOCAB, BOS, PAD = 30, 1, 0
MAX_LENGTH = 12
MODES = {  # name -> (use_cache, static_cache)
    "static": (True, True),
    "growing": (True, False),
    "none": (False, False),
}


def decoder() -> CaptionDecoder:
    torch.manual_seed(0)
    config = CaptionDecoderConfig(dim=32, num_layers=2, num_heads=4, max_length=MAX_LENGTH)
    return CaptionDecoder(24, VOCAB, config, BOS, eos_id=-1, pad_id=PAD).eval()


def context(batch: int) -> EncoderOutput:
    tokens = torch.randn(batch, 9, 24, generator=torch.Generator().manual_seed(batch))
    mask = torch.ones(batch, 9, dtype=torch.bool)
    if batch > 1:
        mask[1, 5:] = False  # padded context rows next to full ones
        mask[-1, 2:] = False
    return EncoderOutput(tokens, mask, tokens.mean(1))


def ending_times(tokens: torch.Tensor, eos: int) -> list[int]:
    """Per row the step of its first ``eos`` (``T`` when it never ends)."""
    hits = tokens == eos
    return [int(row.nonzero()[0]) if bool(row.any()) else tokens.shape[1] for row in hits]


def staggered_eos(head: CaptionDecoder, fused: EncoderOutput) -> int:
    """A token that, used as EOS, ends the rows of greedy decoding at several different steps."""
    free = decode(head, fused, DecodingOptions(use_cache=False)).tokens  # EOS unreachable
    best = max(range(VOCAB), key=lambda t: len(set(ending_times(free, t))))
    return best


def options(mode: str, **kwargs: object) -> DecodingOptions:
    use_cache, static = MODES[mode]
    return DecodingOptions(use_cache=use_cache, static_cache=static, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [1, 16])
def test_greedy_is_identical_with_static_growing_and_no_cache(batch: int) -> None:
    head, fused = decoder(), context(batch)
    if batch > 1:
        head.eos_id = staggered_eos(head, fused)
    runs = {mode: decode(head, fused, options(mode, strategy="greedy")) for mode in MODES}
    reference = runs["none"]
    if batch > 1:
        ends = ending_times(reference.tokens, head.eos_id)
        assert len(set(ends)) >= 3, f"rows should end at different steps, got {ends}"
        for row, end in enumerate(ends):  # PAD after a row's EOS
            assert bool((reference.tokens[row, end + 1 :] == PAD).all())
    for mode, run in runs.items():
        assert torch.equal(run.tokens, reference.tokens), mode
        torch.testing.assert_close(run.scores, reference.scores, atol=1e-5, rtol=0)
    assert torch.equal(head.generate(fused), reference.tokens)  # the head's own greedy loop


@pytest.mark.parametrize("batch", [1, 16])
def test_step_logits_agree_within_1e5_for_every_cache(batch: int) -> None:
    head, fused = decoder(), context(batch)
    prefix = torch.randint(
        2, VOCAB, (batch, MAX_LENGTH), generator=torch.Generator().manual_seed(3)
    )
    prefix[:, 0] = BOS
    with torch.no_grad():
        full = head.logits(prefix, fused)  # (B, L, V), one teacher-forced pass
        for mode in ("static", "growing"):
            use_cache, static = MODES[mode]
            stepper = DecoderStepper(head, fused, use_cache, static)
            steps = torch.stack([stepper(prefix[:, : t + 1]) for t in range(MAX_LENGTH)], dim=1)
            torch.testing.assert_close(steps, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 16])
def test_beam_search_is_identical_for_every_cache(batch: int) -> None:
    head, fused = decoder(), context(batch)
    head.eos_id = staggered_eos(head, fused)
    runs = {
        mode: decode(head, fused, options(mode, strategy="beam", beam_size=3)) for mode in MODES
    }
    for mode, run in runs.items():
        assert torch.equal(run.tokens, runs["none"].tokens), mode
        torch.testing.assert_close(run.scores, runs["none"].scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 16])
def test_seeded_sampling_is_identical_for_every_cache(batch: int) -> None:
    head, fused = decoder(), context(batch)
    head.eos_id = staggered_eos(head, fused)
    sampled = {
        mode: decode(head, fused, options(mode, strategy="nucleus", top_p=0.95, temperature=2.0))
        for mode in MODES
    }
    for mode, run in sampled.items():
        assert torch.equal(run.tokens, sampled["none"].tokens), mode
    greedy = decode(head, fused, options("static")).tokens
    assert not torch.equal(sampled["static"].tokens, greedy), "temperature 2 should sample"


def test_training_mode_steps_through_the_general_forward() -> None:
    """With dropout active the lean step is not used; dropout 0 makes both paths comparable."""
    head, fused = decoder(), context(4)
    want = decode(head, fused, options("none")).tokens
    head.train()
    with torch.no_grad():
        got = decode(head, fused, options("static")).tokens
    assert torch.equal(got, want)


def test_decode_uses_one_static_buffer_for_every_step() -> None:
    """The default options decode with a static cache whose buffers never move (no per-step
    allocation); ``static_cache=False`` gives the growing cache."""
    head, fused = decoder(), context(4)
    stepper = DecoderStepper(head, fused, use_cache=True, static=True)
    caches = stepper.cache
    assert caches is not None
    assert all(isinstance(self_cache, StaticKVCache) for self_cache, _ in caches)
    prefix = torch.full((4, MAX_LENGTH), BOS)
    stepper(prefix[:, :1])
    storage = caches[0][0].buffers[0].data_ptr()
    for t in range(1, MAX_LENGTH):
        stepper(prefix[:, : t + 1])
    keys = caches[0][0].buffers[0]
    assert keys.data_ptr() == storage and keys.shape == (4, 4, MAX_LENGTH, 8)
    growing = DecoderStepper(head, fused, use_cache=True, static=False).cache
    assert growing is not None
    assert all(isinstance(self_cache, KVCache) for self_cache, _ in growing)


def test_decode_returns_ordinary_tensors_from_inference_mode() -> None:
    """The searches run under ``torch.inference_mode``; what callers get back is an ordinary
    tensor (an inference tensor would refuse the in-place edit below)."""
    head, fused = decoder(), context(2)
    out = decode(head, fused, options("static"))
    generated = head.generate(fused)
    for tensor in (out.tokens, out.scores, generated):
        assert not tensor.is_inference()
    out.tokens[:, 0] = PAD  # e.g. a caller masking a position in place
    assert torch.equal(generated, decode(head, fused, options("none")).tokens)
