"""Caption decoder head: cached greedy decoding equals uncached, tying, teacher-forced logits."""

from __future__ import annotations

import pytest
import torch

from omnifuse.config.heads import CaptionDecoderConfig
from omnifuse.heads import CaptionDecoder
from omnifuse.modalities.base import EncoderOutput

VOCAB, BOS, EOS, PAD = 50, 5, 6, 0


def decoder(tie: bool = True, max_length: int = 12) -> CaptionDecoder:
    config = CaptionDecoderConfig(
        dim=32, num_layers=2, num_heads=2, max_length=max_length, tie_embeddings=tie
    )
    return CaptionDecoder(24, VOCAB, config, BOS, EOS, PAD).eval()


def context(batch: int = 3, length: int = 7) -> EncoderOutput:
    tokens = torch.randn(batch, length, 24)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 4:] = False  # a padded context row
    return EncoderOutput(tokens, mask, tokens.mean(1))


def test_cached_greedy_decoding_equals_uncached() -> None:
    head, fused = decoder(), context()
    cached = head.generate(fused, eos_id=-1)  # an unreachable EOS: decode every step
    uncached = head.generate(fused, eos_id=-1, use_cache=False)
    assert cached.shape == (3, 12)
    assert torch.equal(cached, uncached)
    assert len(set(cached.flatten().tolist())) > 1, "random weights give varied tokens"


def test_cached_step_logits_match_the_full_pass() -> None:
    head, fused = decoder(), context()
    ids = torch.randint(7, VOCAB, (3, 6))
    full = head.logits(ids, fused)  # (B, L, V)
    cache = head.decoder.new_cache()
    steps = [head.logits(ids[:, t : t + 1], fused, cache=cache, start=t) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_generation_stops_at_eos_and_pads_finished_rows() -> None:
    head, fused = decoder(), context()
    first = head.generate(fused, max_length=1)[:, 0]
    out = head.generate(fused, eos_id=int(first[0]))
    assert out[0, 0] == first[0]
    assert bool((out[0, 1:] == PAD).all())
    assert head.generate(fused, max_length=4, eos_id=-1).shape == (3, 4)
    assert head.generate(fused, max_length=99, eos_id=-1).shape[1] == 12  # capped at max_length


def test_forward_teacher_forcing_and_generation() -> None:
    head, fused = decoder(), context()
    ids = torch.randint(7, VOCAB, (3, 5))
    assert head(fused, ids).shape == (3, 5, VOCAB)
    assert torch.equal(head(fused), head.generate(fused))
    with pytest.raises(ValueError, match="reaches position 13, beyond max_length=12"):
        head(fused, torch.zeros(3, 13, dtype=torch.long))


def test_causal_logits_ignore_future_tokens() -> None:
    head, fused = decoder(), context()
    ids = torch.randint(7, VOCAB, (3, 5))
    changed = ids.clone()
    changed[:, 3:] = 1
    torch.testing.assert_close(head(fused, ids)[:, :3], head(fused, changed)[:, :3])


def test_weight_tying() -> None:
    tied, untied = decoder(tie=True), decoder(tie=False)
    assert tied.lm_head.weight is tied.token_embed.weight
    assert untied.lm_head.weight is not untied.token_embed.weight
    assert (
        sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
        == VOCAB * 32
    )
