"""Multi-head attention: KV-cached decoding (growing and static caches, the lean step) equals
full causal attention; cross-attention masks."""

from __future__ import annotations

import pytest
import torch

from omnifuse.layers import KVCache, MultiHeadAttention, StaticKVCache, TransformerStack

ATOL = 1e-5  # float32: cached and full paths sum the same terms in a different order


def _attention(context_dim: int | None = None) -> MultiHeadAttention:
    return MultiHeadAttention(16, num_heads=4, context_dim=context_dim).eval()


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1, 1], [2, 3, 1]])
def test_cached_incremental_self_attention_equals_full_causal(chunks: list[int]) -> None:
    attn, x = _attention(), torch.randn(2, 6, 16)
    full = attn(x, causal=True)
    cache, outputs, start = KVCache(), [], 0
    for size in chunks:  # one token at a time, or several: query i sits at cache.length + i
        outputs.append(attn(x[:, start : start + size], causal=True, cache=cache))
        start += size
    assert cache.length == 6
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=ATOL, rtol=0)


def test_causal_outputs_ignore_later_tokens() -> None:
    attn, x = _attention(), torch.randn(1, 5, 16)
    changed = x.clone()
    changed[:, 3:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(attn(x, causal=True)[:, :3], attn(changed, causal=True)[:, :3])


def test_cross_attention_shapes_and_key_mask() -> None:
    attn = _attention(context_dim=24)
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 24)
    key_mask = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    out = attn(x, context=context, key_mask=key_mask)
    assert out.shape == (2, 5, 16)
    changed = context.clone()
    changed[0, 4:] = 100.0  # masked keys: sample 0 must not see them
    again = attn(x, context=changed, key_mask=key_mask)
    torch.testing.assert_close(again, out)


def test_all_masked_keys_give_no_nan() -> None:
    attn = _attention(context_dim=24)
    x, context = torch.randn(2, 3, 16), torch.randn(2, 4, 24)
    key_mask = torch.tensor([[False] * 4, [True] * 4])  # sample 0 lacks the whole context
    out = attn(x, context=context, key_mask=key_mask)
    assert bool(torch.isfinite(out).all())
    # Zero attention output for sample 0, so only the output projection's bias remains.
    torch.testing.assert_close(out[0], attn.out_proj.bias.detach().expand(3, 16))


def test_cross_attention_cache_keeps_the_first_context() -> None:
    attn, cache = _attention(context_dim=24), KVCache()
    x, context = torch.randn(1, 2, 16), torch.randn(1, 4, 24)
    first = attn(x, context=context, cache=cache)
    # While decoding the context never changes: later steps reuse the cached keys and values.
    again = attn(x, context=torch.zeros(1, 4, 24), cache=cache)
    torch.testing.assert_close(again, first)


def test_key_mask_shape_and_heads_are_checked() -> None:
    with pytest.raises(ValueError, match="dim=10 is not divisible by num_heads=4"):
        MultiHeadAttention(10, num_heads=4)
    with pytest.raises(ValueError, match=r"key_mask has shape \(2, 3\), expected \(2, 5\)"):
        _attention()(torch.randn(2, 5, 16), key_mask=torch.ones(2, 3, dtype=torch.bool))


def test_cached_decoder_stack_equals_full_causal_pass() -> None:
    """The whole decoder (self + cross-attention per block) with per-layer caches."""
    decoder = TransformerStack(16, 2, 4, cross_attention=True, context_dim=24).eval()
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 24)
    context_mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    full = decoder(x, context=context, context_mask=context_mask, causal=True)
    cache = decoder.new_cache()
    steps = [
        decoder(
            x[:, i : i + 1], context=context, context_mask=context_mask, causal=True, cache=cache
        )
        for i in range(5)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


def test_static_cache_equals_growing_cache_and_checks_capacity() -> None:
    attn, x = _attention(), torch.randn(2, 6, 16)
    growing, static = KVCache(), StaticKVCache(capacity=6)
    for i in range(6):
        a = attn(x[:, i : i + 1], causal=True, cache=growing)
        b = attn(x[:, i : i + 1], causal=True, cache=static)
        torch.testing.assert_close(b, a, atol=ATOL, rtol=0)
    assert static.length == growing.length == 6
    assert static.key is not None and growing.key is not None
    torch.testing.assert_close(static.key, growing.key)
    with pytest.raises(ValueError, match="holds 6 positions; appending reaches 7"):
        attn(x[:, :1], causal=True, cache=static)


def test_static_cache_reorders_rows_in_place_and_expands() -> None:
    cache = StaticKVCache(capacity=4)
    keys = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 2, 2, 8).contiguous()
    cache.append(keys, keys + 10)
    assert cache.buffers is not None
    storage = cache.buffers[0].data_ptr()
    cache.reorder(torch.tensor([2, 2, 0]))  # same rows: reordered inside the buffers
    assert cache.buffers[0].data_ptr() == storage
    assert cache.key is not None and cache.value is not None
    assert cache.key[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    assert cache.value[:, 0, 0, 0].tolist() == [12.0, 12.0, 10.0]
    cache.reorder(torch.tensor([0, 0, 1, 1, 2, 2]))  # beams expanded: new buffers
    assert cache.key is not None and cache.key.shape == (6, 2, 2, 8)
    assert cache.key[:, 0, 0, 0].tolist() == [2.0, 2.0, 2.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize("static", [False, True])
def test_lean_stack_step_equals_the_cached_forward(static: bool) -> None:
    """``TransformerStack.step`` (packed q/k/v, cached context mask) == ``forward`` with a cache,
    including a sample whose whole context is masked (zeros, not NaN)."""
    decoder = TransformerStack(16, 2, 4, cross_attention=True, context_dim=24).eval()
    x, context = torch.randn(3, 5, 16), torch.randn(3, 7, 24)
    context_mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4, [False] * 7])
    reference, lean = decoder.new_cache(), decoder.new_cache(5 if static else None)
    for i in range(5):
        want = decoder(
            x[:, i : i + 1],
            context=context,
            context_mask=context_mask,
            causal=True,
            cache=reference,
        )
        got = decoder.step(x[:, i : i + 1], lean, context, context_mask)
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert bool(torch.isfinite(got).all())


def test_packed_projection_follows_weight_updates() -> None:
    attn = _attention()
    weight, _ = attn.packed_in_proj()
    assert attn.packed_in_proj()[0] is weight  # kept while the weights are unchanged
    with torch.no_grad():
        attn.k_proj.weight.add_(1.0)  # an optimizer step or load_state_dict writes in place
    weight, bias = attn.packed_in_proj()
    torch.testing.assert_close(weight[16:32], attn.k_proj.weight)
    assert bias is not None and bias.shape == (48,)


@pytest.mark.parametrize("masked", [False, True])
def test_cpu_bf16_attention_runs_in_fp32_and_keeps_the_dtype(masked: bool) -> None:
    from omnifuse.layers.attention import attend

    q, k, v = (torch.randn(2, 4, 5, 8, dtype=torch.bfloat16, requires_grad=True) for _ in "qkv")
    mask = torch.rand(2, 1, 5, 5) > 0.3 if masked else None
    if mask is not None:
        mask[..., 0] = True  # every query keeps a key
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(q, k, v, mask, 0.0)
    assert out.dtype == torch.bfloat16
    reference = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask
    )
    # Only the final rounding to bf16 separates them: the products themselves ran in fp32.
    assert torch.equal(out, reference.to(torch.bfloat16))
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0


def test_reordering_a_cross_cache_drops_its_batched_operands() -> None:
    """The fused step's transposed keys follow the rows only if they are made again."""
    cache = KVCache(torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4))
    cache.batched = (torch.randn(2, 4, 3), torch.randn(2, 3, 4), None)
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.batched is None
    assert cache.key is not None and cache.key.shape[0] == 3
