"""One fused decoding step over a whole pre-norm decoder stack, its final norm and its LM head.

:meth:`TransformerStack.step <omnifuse.layers.TransformerStack.step>` is the readable lean step;
:class:`FusedDecoder` computes the same thing (tested to 1e-5) with what pays at decoding shapes
(one new position, batch 1-16, width 256) on a CPU, where a step is a few dozen tiny operations:

- every projection is ``torch.addmm(bias, x, weight_t)`` against a copy of its weight stored
  ``[in, out]`` contiguous. ``F.linear`` hands MKL a transposed view; at ``[16, 256] x [256, 768]``
  that ran in 59 us against 38 us for the contiguous copy (14 against 9 us at batch 1), and the
  projections are about half of a step's time (docs/inference.md, "Where a step's time goes");
- activations stay ``[B, dim]`` (no sequence axis to carry), residual adds happen in place on the
  projection's fresh output, and no module is called;
- the LM head runs on the new position only.

The copies are made once per set of weights (:func:`fused_decoder` keys them by every
parameter's storage and in-place version, as ``MultiHeadAttention.packed_in_proj`` does), so an
optimizer step or ``load_state_dict`` is picked up at the next decoding run; they cost the
decoder's parameter memory once more.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.layers.attention import KVCache, MultiHeadAttention
from omnifuse.layers.transformer import LayerCache, TransformerBlock, TransformerStack


@dataclass(frozen=True)
class _Affine:
    """``x @ weight + bias`` with ``weight`` ``[in, out]`` contiguous (a transposed copy)."""

    weight: Tensor
    bias: Tensor | None

    @classmethod
    def of(cls, *linears: nn.Linear) -> _Affine:
        """The projections ``linears`` side by side (one GEMM for q, k and v)."""
        weight = torch.cat([linear.weight for linear in linears]).t().contiguous()
        biases = [linear.bias for linear in linears]
        bias = None if biases[0] is None else torch.cat([b for b in biases if b is not None])
        return cls(weight, bias)

    def __call__(self, x: Tensor) -> Tensor:
        """``[B, in] -> [B, out]``."""
        if self.bias is None:
            return torch.mm(x, self.weight)
        return torch.addmm(self.bias, x, self.weight)


@dataclass(frozen=True)
class _Norm:
    """A LayerNorm's parameters, applied without the module call."""

    shape: tuple[int, ...]
    weight: Tensor | None
    bias: Tensor | None
    eps: float

    @classmethod
    def of(cls, norm: nn.LayerNorm) -> _Norm:
        return cls(tuple(norm.normalized_shape), norm.weight, norm.bias, norm.eps)

    @classmethod
    def optional(cls, norm: nn.Module) -> _Norm | None:
        """None for ``nn.Identity`` (a stack without a final norm)."""
        return cls.of(norm) if isinstance(norm, nn.LayerNorm) else None

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class _Cross:
    """A block's cross-attention: its norm, query and output projections, and the module that
    computes (once per run, into the cache) the context's keys, values and mask."""

    norm: _Norm
    query: _Affine
    out: _Affine
    attention: MultiHeadAttention

    def __call__(
        self,
        x: Tensor,
        heads: int,
        cross_cache: KVCache,
        context: Tensor | None,
        context_mask: Tensor | None,
    ) -> Tensor:
        """Cross-attention with residual, ``[B, dim] -> [B, dim]``."""
        if cross_cache.key is None and context is None:
            raise ValueError("this block has cross-attention and needs a `context`")
        # Keys/values and mask of the context: computed at the first step, then read from the
        # cache (which ignores the context argument, so later steps need not pass one).
        k, v, mask = self.attention.cross_attention_inputs(
            context if context is not None else x, context_mask, cross_cache
        )
        b = x.shape[0]
        q = self.query(self.norm(x)).view(b, heads, 1, -1)  # (B, H, 1, Dh)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[0])
            out = out * mask[1].to(out.dtype)  # a row without valid context keys gives zeros
        return self.out(out.view(b, -1)).add_(x)


@dataclass(frozen=True)
class _Block:
    """One pre-norm block's weights in :class:`_Affine` / :class:`_Norm` form."""

    heads: int
    attn_norm: _Norm
    qkv: _Affine
    attn_out: _Affine
    cross: _Cross | None
    mlp_norm: _Norm
    fc1: _Affine
    fc2: _Affine
    act: Callable[[Tensor], Tensor]

    @classmethod
    def of(cls, block: TransformerBlock) -> _Block:
        attn, cross = block.attn, None
        if block.cross_attn is not None and block.cross_norm is not None:
            ca = block.cross_attn
            cross = _Cross(
                _Norm.of(block.cross_norm), _Affine.of(ca.q_proj), _Affine.of(ca.out_proj), ca
            )
        return cls(
            heads=attn.num_heads,
            attn_norm=_Norm.of(block.attn_norm),
            qkv=_Affine.of(attn.q_proj, attn.k_proj, attn.v_proj),
            attn_out=_Affine.of(attn.out_proj),
            cross=cross,
            mlp_norm=_Norm.of(block.mlp_norm),
            fc1=_Affine.of(block.mlp.fc1),
            fc2=_Affine.of(block.mlp.fc2),
            act=block.mlp.act,
        )

    def __call__(
        self, x: Tensor, cache: LayerCache, context: Tensor | None, context_mask: Tensor | None
    ) -> Tensor:
        """``[B, dim] -> [B, dim]``: what ``TransformerBlock.step`` computes for one position."""
        b, self_cache = x.shape[0], cache[0]
        qkv = self.qkv(self.attn_norm(x)).view(b, 3, self.heads, 1, -1)  # (B, 3, H, 1, Dh)
        k, v = self_cache.append(qkv[:, 1], qkv[:, 2])  # (B, H, S, Dh)
        # One query at the newest position sees every key: no mask.
        out = F.scaled_dot_product_attention(qkv[:, 0], k, v)  # (B, H, 1, Dh)
        x = self.attn_out(out.view(b, -1)).add_(x)
        if self.cross is not None:
            x = self.cross(x, self.heads, cache[1], context, context_mask)
        return self.fc2(self.act(self.fc1(self.mlp_norm(x)))).add_(x)


@dataclass(frozen=True)
class FusedDecoder:
    """A pre-norm decoder stack plus LM head as one step function (see the module docstring).

    Build it with :func:`fused_decoder`, which reuses it while the weights are unchanged.
    """

    blocks: tuple[_Block, ...]
    norm: _Norm | None
    head: _Affine

    @classmethod
    def of(cls, stack: TransformerStack, head: nn.Linear) -> FusedDecoder:
        blocks = []
        for block in stack.layers:
            if not isinstance(block, TransformerBlock) or not block.norm_first:
                raise ValueError("the fused step serves pre-norm TransformerBlocks only")
            blocks.append(_Block.of(block))
        return cls(tuple(blocks), _Norm.optional(stack.norm), _Affine.of(head))

    def __call__(
        self,
        x: Tensor,
        cache: Sequence[LayerCache],
        context: Tensor | None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """One cached decoding position through every block, the final norm and the head.

        Args:
            x: ``[B, dim]`` embedded input at the position after the cached ones.
            cache: per-block (self, cross) caches; the self-attention ones gain this position.
            context: ``[B, S, C]`` cross-attention source (read at the first step only).
            context_mask: ``[B, S]`` bool or None (every context token valid).

        Returns:
            ``[B, V]`` next-token logits.
        """
        with torch.no_grad():
            for block, layer_cache in zip(self.blocks, cache, strict=True):
                x = block(x, layer_cache, context, context_mask)
            if self.norm is not None:
                x = self.norm(x)
            return self.head(x)


_WeightsKey = tuple[tuple[int, int], ...]
_BUILT: weakref.WeakKeyDictionary[TransformerStack, tuple[_WeightsKey, FusedDecoder]]
_BUILT = weakref.WeakKeyDictionary()
"""Per stack: the weights key it was built from and its fused step (dropped with the stack)."""


def _weights_key(*modules: nn.Module) -> _WeightsKey:
    """Storage and in-place version of every parameter: it changes when any weight does."""
    return tuple((p.data_ptr(), p._version) for m in modules for p in m.parameters())


def fused_decoder(stack: TransformerStack, head: nn.Linear, check: bool = True) -> FusedDecoder:
    """The :class:`FusedDecoder` of ``stack`` + ``head``, rebuilt only when a weight changed.

    Args:
        stack: a pre-norm decoder stack.
        head: its LM head.
        check: compare every parameter's version with the built copy's (a few microseconds per
            parameter: do it at a run's first step; weights do not change while decoding).
    """
    built = _BUILT.get(stack)
    if built is not None and not check:
        return built[1]
    key = _weights_key(stack, head)
    if built is None or built[0] != key:
        with torch.no_grad():
            built = (key, FusedDecoder.of(stack, head))
        _BUILT[stack] = built
    return built[1]
