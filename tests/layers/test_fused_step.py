"""The fused decoding step (``layers.fused_step``) computes what the lean stack step and the LM
head compute, follows weight updates, and refuses stacks it cannot serve; so does the fused
encoder against the module path of ``TransformerStack.forward``; the oneDNN projections compute
what ``addmm`` computes."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import nn

from omnifuse.layers import TransformerBlock, TransformerStack, fused_step
from omnifuse.layers.fused_step import FusedDecoder, FusedEncoder, fused_decoder

ONEDNN = pytest.mark.skipif(not fused_step._onednn(), reason="this torch has no oneDNN linear")

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


def _without_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build fused copies as on a torch without oneDNN: every projection on ``addmm``."""
    monkeypatch.setattr(fused_step, "_onednn", lambda: False)


@ONEDNN
def test_onednn_decoding_step_equals_the_addmm_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """At decoding shapes where oneDNN serves the wide projections (width 256, batch 16): logits
    within 1e-5 of the ``addmm``-only step at every step, the same greedy tokens."""
    torch.manual_seed(0)
    stack = TransformerStack(256, 2, 4, cross_attention=True, context_dim=256).eval()
    head = nn.Linear(256, 263, bias=False)
    fast = FusedDecoder.of(stack, head)
    assert fast.blocks[0].fc1.packed is not None  # the path under test is taken
    assert fast.blocks[0].fc1.rows <= 16 < fast.blocks[0].attn_out.rows  # [256, 256]: addmm
    _without_onednn(monkeypatch)
    plain = FusedDecoder.of(stack, head)
    assert plain.blocks[0].fc1.packed is None
    x, context = torch.randn(16, STEPS, 256), torch.randn(16, 65, 256)
    fast_cache, plain_cache = stack.new_cache(STEPS), stack.new_cache(STEPS)
    with torch.inference_mode():
        for i in range(STEPS):
            got, want = fast(x[:, i], fast_cache, context), plain(x[:, i], plain_cache, context)
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
            assert torch.equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("batch", [1, 16])
def test_fused_encoder_equals_the_module_path(activation: str, batch: int) -> None:
    """``forward`` without gradients runs the fused encoder (oneDNN at batch 16: 320 rows);
    its output is within 1e-5 of the module path (gradients on) and the input is untouched."""
    torch.manual_seed(0)
    stack = TransformerStack(16, 2, 4, activation=activation).eval()  # type: ignore[arg-type]
    x = torch.randn(batch, 20, 16)
    before = x.clone()
    want = stack(x).detach()
    assert stack not in fused_step._ENCODERS  # gradients on: the module path
    with torch.no_grad():
        got = stack(x)
    assert stack in fused_step._ENCODERS
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(x, before, atol=0, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_encoder_keeps_the_module_path_where_the_fused_one_does_not_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key mask, training mode, a traced graph (ONNX export), autocast or a causal stack take
    the module path; a stack with cross-attention is refused by the fused encoder itself."""

    def refuse(stack: TransformerStack) -> FusedEncoder:
        raise AssertionError("the fused encoder ran")

    monkeypatch.setattr(fused_step, "fused_encoder", refuse)
    torch.manual_seed(0)
    stack = TransformerStack(16, 1, 4).eval()
    x, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        stack(x, mask=mask)
        stack(x, causal=True)
        torch.jit.trace(stack, (x,), check_trace=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            stack(x)
        stack.train()(x)
    with pytest.raises(ValueError, match="self-attention blocks only"):
        FusedEncoder.of(TransformerStack(16, 1, 4, cross_attention=True))
    with pytest.raises(ValueError, match="pre-norm TransformerBlocks only"):
        FusedEncoder.of(TransformerStack(16, 1, 4, norm_first=False))


def test_fused_encoder_is_rebuilt_after_a_weight_update() -> None:
    torch.manual_seed(0)
    stack = TransformerStack(16, 1, 4).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        stack(x)
        first = fused_step._ENCODERS[stack][1]
        cast(TransformerBlock, stack.layers[0]).mlp.fc2.bias.add_(1.0)
        got = stack(x)
    assert fused_step._ENCODERS[stack][1] is not first
    torch.testing.assert_close(got, stack(x).detach(), atol=ATOL, rtol=0)


@ONEDNN
def test_onednn_projections_step_aside_under_autocast() -> None:
    """Under CPU autocast the wide projections stay on ``addmm``, which autocast runs in bf16
    (what the module path computes), rather than on oneDNN in fp32."""
    torch.manual_seed(0)
    linear = nn.Linear(256, 1024)
    affine = fused_step._Affine.of(linear)
    x = torch.randn(16, 256)
    with torch.no_grad():
        assert affine(x).dtype == torch.float32  # oneDNN, fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert affine(x).dtype == torch.bfloat16
            assert linear(x).dtype == torch.bfloat16


def test_lora_wrapped_projections_keep_the_module_paths() -> None:
    """A peft LoRA layer keeps ``B A`` beside the base weight, which the lean and fused steps
    (reading ``.weight``) would skip: stacks with one are encoded and stepped by the modules."""
    from peft import LoraConfig, inject_adapter_in_model

    from omnifuse.layers.transformer import encodes_leanly, steps_leanly

    stack, head = _decoder()
    encoder = TransformerStack(16, 2, 4).eval()
    assert steps_leanly(stack, head) and encodes_leanly(encoder, None, None, False) is False
    with torch.no_grad():
        assert encodes_leanly(encoder, None, None, False)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False)
    inject_adapter_in_model(lora, encoder)
    inject_adapter_in_model(lora, stack)
    assert not steps_leanly(stack, head)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert not encodes_leanly(encoder, None, None, False)
        got = encoder(x)
    torch.testing.assert_close(got, encoder(x).detach())  # the grad-mode (module) path
    assert not steps_leanly(TransformerStack(16, 1, 4).eval(), nn.Sequential(nn.Linear(16, 3)))
