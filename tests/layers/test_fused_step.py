"""The fused decoding step (``layers.fused_step``) computes what the lean stack step and the LM
head compute, follows weight updates, and refuses stacks it cannot serve."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import nn

from omnifuse.layers import TransformerBlock, TransformerStack
from omnifuse.layers.fused_step import FusedDecoder, fused_decoder

ATOL = 1e-5
STEPS = 5


def _decoder() -> tuple[TransformerStack, nn.Linear]:
    torch.manual_seed(0)
    stack = TransformerStack(16, 2, 4, cross_attention=True, context_dim=24).eval()
    return stack, nn.Linear(16, 11, bias=False)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("batch", [1, 16])
def test_fused_step_equals_the_lean_stack_step_and_head(static: bool, batch: int) -> None:
    """Logits within 1e-5 at every step, including a sample whose whole context is masked
    (zeros from cross-attention, not NaN) and one with a padded context."""
    stack, head = _decoder()
    x, context = torch.randn(batch, STEPS, 16), torch.randn(batch, 7, 24)
    context_mask = torch.ones(batch, 7, dtype=torch.bool)
    if batch > 1:
        context_mask[0] = False
        context_mask[1, 3:] = False
    capacity = STEPS if static else None
    reference, fused_cache = stack.new_cache(capacity), stack.new_cache(capacity)
    step = fused_decoder(stack, head)
    with torch.no_grad():
        for i in range(STEPS):
            want = head(stack.step(x[:, i : i + 1], reference, context, context_mask)[:, 0])
            got = step(x[:, i], fused_cache, context, context_mask)
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert bool(torch.isfinite(got).all())
    assert fused_cache[0][0].length == STEPS  # the self-attention cache gained every position


def test_fused_decoder_is_kept_until_a_weight_changes() -> None:
    stack, head = _decoder()
    linear = cast(TransformerBlock, stack.layers[0]).mlp.fc1
    first = fused_decoder(stack, head)
    assert fused_decoder(stack, head) is first  # unchanged weights: the same copies
    with torch.no_grad():
        linear.weight.add_(1.0)  # an optimizer step writes in place
    assert fused_decoder(stack, head, check=False) is first  # mid-run: no check
    rebuilt = fused_decoder(stack, head)
    assert rebuilt is not first
    fc1 = rebuilt.blocks[0].fc1.weight  # [in, out]: the transposed weight
    torch.testing.assert_close(fc1, linear.weight.t())
    assert fc1.is_contiguous()


def test_fused_decoder_rejects_a_post_norm_stack() -> None:
    stack = TransformerStack(16, 1, 4, norm_first=False)
    with pytest.raises(ValueError, match="pre-norm TransformerBlocks only"):
        FusedDecoder.of(stack, nn.Linear(16, 11))


def test_copies_built_under_inference_mode_serve_a_later_no_grad_run() -> None:
    """``decode`` builds the copies under ``inference_mode``; the video prior and direct
    ``step`` calls later use them under plain ``no_grad`` (inference tensors allow that)."""
    stack, head = _decoder()
    context = torch.randn(2, 7, 24)
    with torch.inference_mode():
        step = fused_decoder(stack, head)
    x = torch.randn(2, STEPS, 16)
    fused_cache, reference = stack.new_cache(STEPS), stack.new_cache(STEPS)
    with torch.no_grad():
        for i in range(STEPS):
            got = step(x[:, i], fused_cache, context)
            want = head(stack.step(x[:, i : i + 1], reference, context)[:, 0])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert not got.is_inference()
