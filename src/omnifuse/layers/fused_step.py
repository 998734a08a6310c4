"""One fused decoding step over a whole pre-norm decoder stack, its final norm and its LM head;
the same blocks fused for encoding.

:meth:`TransformerStack.step <omnifuse.layers.TransformerStack.step>` is the readable lean step;
:class:`FusedDecoder` computes the same thing (tested to 1e-5) with what pays at decoding shapes
(one new position, batch 1-16, width 256) on a CPU, where a step is a few dozen tiny operations:

- every projection is ``torch.addmm(bias, x, weight_t)`` against a copy of its weight stored
  ``[in, out]`` contiguous. ``F.linear`` hands MKL a transposed view; at ``[16, 256] x [256, 768]``
  that ran in 59 us against 38 us for the contiguous copy (14 against 9 us at batch 1), and the
  projections are about half of a step's time (docs/inference.md, "Where a step's time goes");
- from two rows on, the wide projections (q/k/v, the MLP) run on oneDNN's linear against a
  prepacked weight, with the MLP's gelu and the residual adds fused into the GEMM (what
  inductor emits on CPU; :data:`ONEDNN_ROWS`, :data:`ONEDNN_WEIGHTS` give the measured rule);
- cross-attention is two batched GEMMs against keys stored transposed (``KVCache.batched``),
  its keys and values computed at the first step by one GEMM per layer;
- activations stay ``[B, dim]`` (no sequence axis to carry), residual adds happen in place on the
  projection's fresh output, and no module is called;
- the LM head runs on the new position only.

:class:`FusedEncoder` serves the same blocks over whole unmasked sequences (``[B * N, dim]``
rows), which ``TransformerStack.forward`` runs at inference: a ViT's encoder pass.

The copies are made once per set of weights (:func:`fused_decoder` keys them by every
parameter's storage and in-place version, as ``MultiHeadAttention.packed_in_proj`` does), so an
optimizer step or ``load_state_dict`` is picked up at the next decoding run; they cost the
decoder's parameter memory once more.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.layers.attention import KVCache
from omnifuse.layers.attention import context_mask as context_mask_of
from omnifuse.layers.transformer import LayerCache, TransformerBlock, TransformerStack

ONEDNN_ROWS = 2
"""Fewest rows a projection of at least :data:`ONEDNN_WEIGHTS` weights hands to oneDNN (fewer:
MKL's ``addmm``). Measured one thread, fp32, per call (prepacked weight): at one row ``addmm``
takes 18 us against oneDNN's 33 us for ``[1, 256] x [256, 768]``; from two rows on oneDNN is
the faster: at 16 rows q/k/v ``[256, 768]`` 94 against 99 us, fc1 + gelu ``[256, 1024]`` 143
against 216 us (the gelu runs on the GEMM's output while it is still in cache), fc2 + residual
``[1024, 256]`` 111 against 124 us; at 1,040 rows (a ViT block at batch 16) fc1 + gelu 5.9
against 11.2 ms."""

ONEDNN_WEIGHTS = 2**17
"""Smallest weight (``in * out``) oneDNN serves from :data:`ONEDNN_ROWS` rows. Smaller ones
(``[256, 256]``, a 263-token LM head) run slower on oneDNN at decoding batches: ``[256, 256]``
+ residual at 16 rows 55 against 42 us, at 32 rows 73 against 61 us, even at 65 rows; they
move to oneDNN from :data:`ONEDNN_ROWS_SMALL` rows on."""

ONEDNN_ROWS_SMALL = 256
"""Fewest rows a weight below :data:`ONEDNN_WEIGHTS` hands to oneDNN: at 1,040 rows (a ViT's
attention output at batch 16) ``[256, 256]`` ran in 1.66 against 2.07 ms."""

_PACK_ROWS = 16
"""The row count oneDNN lays the packed weight out for (a hint; any row count computes the
same). Packed for 16 rows it served 2-1,040 rows as fast as a pack for the exact count."""


def _onednn() -> bool:
    """Whether this torch has the oneDNN linear that inductor emits on CPU (packed weight,
    fused pointwise epilogue)."""
    return bool(torch._C._has_mkldnn) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@dataclass(frozen=True)
class _Affine:
    """``x @ weight + bias`` with ``weight`` ``[in, out]`` contiguous (a transposed copy), and
    on CPU in fp32 a oneDNN-packed copy for inputs of ``rows`` rows or more."""

    weight: Tensor
    bias: Tensor | None
    packed: Tensor | None = None
    rows: int = ONEDNN_ROWS

    @classmethod
    def of(cls, *linears: nn.Linear) -> _Affine:
        """The projections ``linears`` side by side (one GEMM for q, k and v)."""
        stacked = torch.cat([linear.weight for linear in linears])  # [out, in]
        biases = [linear.bias for linear in linears]
        bias = None if biases[0] is None else torch.cat([b for b in biases if b is not None])
        packed = None
        if _onednn() and stacked.device.type == "cpu" and stacked.dtype == torch.float32:
            packed = torch.ops.mkldnn._reorder_linear_weight(stacked.detach(), _PACK_ROWS)
        rows = ONEDNN_ROWS if stacked.numel() >= ONEDNN_WEIGHTS else ONEDNN_ROWS_SMALL
        return cls(stacked.t().contiguous(), bias, packed, rows)

    def __call__(self, x: Tensor, gelu: bool = False, add: Tensor | None = None) -> Tensor:
        """``[M, in] -> [M, out]``, then the exact (erf) gelu when ``gelu``, else ``+ add``
        (``[M, out]``, a residual) when given."""
        packed = self.packed
        # Under autocast `addmm` computes in bf16 (as the module path): keep it there. The check
        # comes last: ~1 us, only on calls of >= 2 rows (each >= 30 us).
        if (
            packed is not None
            and x.shape[0] >= self.rows
            and x.dtype == packed.dtype
            and not torch.is_autocast_enabled("cpu")
        ):
            return self._onednn(x, packed, gelu, add)
        if self.bias is None:
            out = torch.mm(x, self.weight)
        else:
            out = torch.addmm(self.bias, x, self.weight)
        if gelu:
            return F.gelu(out)
        return out if add is None else out.add_(add)

    def _onednn(self, x: Tensor, packed: Tensor, gelu: bool, add: Tensor | None) -> Tensor:
        """:meth:`__call__` by oneDNN, the epilogue (gelu or residual add) fused into the GEMM."""
        ops = torch.ops.mkldnn
        out: Tensor
        if gelu:
            # gelu's algorithm "none" is the erf form (F.gelu's default, what eager computes).
            out = ops._linear_pointwise(x, packed, self.bias, "gelu", [], "none")
        elif add is not None:
            out = ops._linear_pointwise.binary(x, add, packed, self.bias, "add")
        else:
            out = ops._linear_pointwise(x, packed, self.bias, "none", [], "")
        return out


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
    """A block's cross-attention: its norm, query, key/value (packed) and output projections."""

    norm: _Norm
    query: _Affine
    kv: _Affine
    out: _Affine

    def __call__(
        self,
        x: Tensor,
        heads: int,
        cross_cache: KVCache,
        context: Tensor | None,
        context_mask: Tensor | None,
    ) -> Tensor:
        """Cross-attention with residual, ``[B, dim] -> [B, dim]``."""
        batched = cross_cache.batched
        if batched is None:
            batched = cross_cache.batched = self._operands(
                cross_cache, heads, context, context_mask
            )
        keys_t, values, bias = batched
        mask = cross_cache.mask
        b, dh = x.shape[0], keys_t.shape[1]
        q = self.query(self.norm(x)).view(b * heads, 1, dh)
        # softmax(q k^T / sqrt(Dh)) v as two batched GEMMs over (sample, head) pairs against
        # keys stored transposed: at batch 16 (64 pairs, 65 keys) 113 against SDPA's 177 us
        # per call, at batch 1 the same (13 us); the outputs agree to ~4e-7.
        if bias is None:
            scores = torch.bmm(q, keys_t).mul_(dh**-0.5)
        else:
            scores = torch.baddbmm(bias, q, keys_t, alpha=dh**-0.5)
        out = torch.bmm(scores.softmax(-1), values).view(b, -1)  # (B, H * Dh)
        if mask is not None:
            out = out * mask[1].view(b, 1).to(out.dtype)  # a row without valid keys gives zeros
        return self.out(out, add=x)

    def _operands(
        self, cache: KVCache, heads: int, context: Tensor | None, context_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The cache's ``batched`` operands, from its keys and values; at a run's first step
        those of ``context`` ``[B, S, C]`` are computed first (one GEMM for both projections,
        on oneDNN from two rows: ``[1040, 256] x [256, 512]`` at batch 16), with its mask."""
        if cache.key is None or cache.value is None:
            if context is None:
                raise ValueError("this block has cross-attention and needs a `context`")
            b, s, c = context.shape
            kv = self.kv(context.reshape(b * s, c)).view(b, s, 2, heads, -1)
            kv = kv.permute(2, 0, 3, 1, 4)  # (2, B, H, S, Dh)
            cache.key, cache.value = kv[0], kv[1]  # views, as MultiHeadAttention's
            cache.mask = context_mask_of(context_mask, b, s, context.device)
        return _batched(cache.key, cache.value, cache.mask)


def _batched(
    k: Tensor, v: Tensor, mask: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``[B, H, S, Dh]`` keys and values (and the cross-attention mask) as :class:`KVCache`'s
    ``batched`` operands: ``[B * H, Dh, S]``, ``[B * H, S, Dh]``, ``[B * H, 1, S]`` or None."""
    b, h, s, dh = k.shape
    keys_t = k.transpose(2, 3).reshape(b * h, dh, s).contiguous()
    values = v.reshape(b * h, s, dh).contiguous()
    if mask is None:
        return keys_t, values, None
    allowed = mask[0].expand(b, h, 1, s).reshape(b * h, 1, s)
    bias = torch.zeros(allowed.shape, dtype=k.dtype, device=k.device)
    return keys_t, values, bias.masked_fill_(~allowed, float("-inf"))


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
    act: Callable[[Tensor], Tensor] | None
    """The MLP's activation; None for the exact gelu, which ``fc1`` computes itself."""

    @classmethod
    def of(cls, block: TransformerBlock) -> _Block:
        attn, cross = block.attn, None
        if block.cross_attn is not None and block.cross_norm is not None:
            ca = block.cross_attn
            cross = _Cross(
                _Norm.of(block.cross_norm),
                _Affine.of(ca.q_proj),
                _Affine.of(ca.k_proj, ca.v_proj),
                _Affine.of(ca.out_proj),
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
            act=None if block.mlp.activation == "gelu" else block.mlp.act,
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
        x = self.attn_out(out.view(b, -1), add=x)
        if self.cross is not None:
            x = self.cross(x, self.heads, cache[1], context, context_mask)
        return self.mlp(x)

    def mlp(self, x: Tensor) -> Tensor:
        """The MLP with its residual, ``[M, dim] -> [M, dim]``."""
        h = self.mlp_norm(x)
        hidden = self.fc1(h, gelu=True) if self.act is None else self.act(self.fc1(h))
        return self.fc2(hidden, add=x)

    def encode(self, x: Tensor, b: int, n: int) -> Tensor:
        """``[B * N, dim] -> [B * N, dim]``: what ``TransformerBlock.forward`` computes for
        ``B`` whole sequences of ``N`` tokens without a mask (no cache, no causal mask)."""
        qkv = self.qkv(self.attn_norm(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, N, Dh)
        x = self.attn_out(out.transpose(1, 2).reshape(b * n, -1), add=x)
        return self.mlp(x)


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


_Fused = TypeVar("_Fused", "FusedDecoder", "FusedEncoder")


@dataclass(frozen=True)
class FusedEncoder:
    """A pre-norm self-attention stack over whole unmasked sequences, in the same form as
    :class:`FusedDecoder` (packed q/k/v, oneDNN projections with the gelu and the residual adds
    fused, no module calls, no dropout). :meth:`TransformerStack.forward
    <omnifuse.layers.TransformerStack.forward>` runs it at inference (see
    :func:`~omnifuse.layers.transformer.encodes_leanly`); build it with :func:`fused_encoder`.
    """

    blocks: tuple[_Block, ...]
    norm: _Norm | None

    @classmethod
    def of(cls, stack: TransformerStack) -> FusedEncoder:
        blocks = []
        for block in stack.layers:
            if not isinstance(block, TransformerBlock) or not block.norm_first:
                raise ValueError("the fused encoder serves pre-norm TransformerBlocks only")
            if block.cross_attn is not None:
                raise ValueError("the fused encoder serves self-attention blocks only")
            blocks.append(_Block.of(block))
        return cls(tuple(blocks), _Norm.optional(stack.norm))

    def __call__(self, x: Tensor) -> Tensor:
        """``[B, N, dim] -> [B, N, dim]``, final norm included."""
        b, n, d = x.shape
        flat = x.reshape(b * n, d)
        with torch.no_grad():
            for block in self.blocks:
                flat = block.encode(flat, b, n)
            if self.norm is not None:
                flat = self.norm(flat)
        return flat.view(b, n, d)


_WeightsKey = tuple[tuple[int, int], ...]
_BUILT: weakref.WeakKeyDictionary[TransformerStack, tuple[_WeightsKey, FusedDecoder]]
_BUILT = weakref.WeakKeyDictionary()
"""Per stack: the weights key it was built from and its fused step (dropped with the stack)."""
_ENCODERS: weakref.WeakKeyDictionary[TransformerStack, tuple[_WeightsKey, FusedEncoder]]
_ENCODERS = weakref.WeakKeyDictionary()
"""The same for fused encoders."""


def _weights_key(*modules: nn.Module) -> _WeightsKey:
    """Storage and in-place version of every parameter: it changes when any weight does."""
    return tuple((p.data_ptr(), p._version) for m in modules for p in m.parameters())


def _built(
    table: weakref.WeakKeyDictionary[TransformerStack, tuple[_WeightsKey, _Fused]],
    stack: TransformerStack,
    modules: tuple[nn.Module, ...],
    build: Callable[[], _Fused],
    check: bool,
) -> _Fused:
    """``table``'s entry for ``stack``, (re)built by ``build`` when a weight of ``modules``
    changed (not checked when ``check`` is False and one exists)."""
    built = table.get(stack)
    if built is not None and not check:
        return built[1]
    key = _weights_key(*modules)
    if built is None or built[0] != key:
        with torch.no_grad():
            built = (key, build())
        table[stack] = built
    return built[1]


def fused_decoder(stack: TransformerStack, head: nn.Linear, check: bool = True) -> FusedDecoder:
    """The :class:`FusedDecoder` of ``stack`` + ``head``, rebuilt only when a weight changed.

    Args:
        stack: a pre-norm decoder stack.
        head: its LM head.
        check: compare every parameter's version with the built copy's (a few microseconds per
            parameter: do it at a run's first step; weights do not change while decoding).
    """
    return _built(_BUILT, stack, (stack, head), lambda: FusedDecoder.of(stack, head), check)


def fused_encoder(stack: TransformerStack) -> FusedEncoder:
    """The :class:`FusedEncoder` of ``stack``, rebuilt only when a weight changed (checked at
    every call: a few microseconds per parameter against milliseconds of encoding)."""
    return _built(_ENCODERS, stack, (stack,), lambda: FusedEncoder.of(stack), True)
