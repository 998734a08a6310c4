"""Multi-head attention on top of ``torch.nn.functional.scaled_dot_product_attention``.

One module serves self-attention, cross-attention and cached incremental decoding (whisper's
``MultiHeadAttention(x, xa)`` idea): pass ``context`` for cross-attention, ``cache`` to reuse keys
and values across decoding steps.

Two self-attention caches share one interface (``length``, ``append``, ``reorder``):
:class:`KVCache` grows by concatenation (any length, what the ONNX step graph traces) and
:class:`StaticKVCache` writes into buffers preallocated for a maximum length, so a decoding step
allocates no new key/value storage. A cross-attention cache is always a :class:`KVCache`: its
keys/values (and the context mask) are computed once, at the first step.

Mask convention used everywhere in omnifuse: a boolean ``mask`` is ``True`` at *valid* positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class KVCache:
    """Keys and values of one attention layer, kept between decoding steps.

    Attributes:
        key: ``[B, H, S, Dh]`` keys seen so far.
        value: ``[B, H, S, Dh]`` values seen so far.
        mask: cross-attention only: ``(allowed [B, 1, 1, S], has_key [B, 1, 1, 1])`` from the
            context mask of the first step (None: every key is valid).
        packed: the layer's packed q/k/v projection, fetched once per decoding run by
            :meth:`MultiHeadAttention.step` (weights do not change while decoding).
        batched: cross-attention in the fused decoding step
            (:mod:`omnifuse.layers.fused_step`): the keys transposed ``[B * H, Dh, S]``, the
            values ``[B * H, S, Dh]`` (both contiguous) and the additive mask ``[B * H, 1, S]``
            (None: every key valid), made from the above at a run's first step.
    """

    key: Tensor | None = None
    value: Tensor | None = None
    mask: tuple[Tensor, Tensor] | None = None
    packed: tuple[Tensor, Tensor | None] | None = None
    batched: tuple[Tensor, Tensor, Tensor | None] | None = None

    @property
    def length(self) -> int:
        return 0 if self.key is None else int(self.key.shape[2])

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``[B, H, n, Dh]`` keys/values; returns all ``[B, H, S + n, Dh]`` so far."""
        if self.key is not None and self.value is not None:
            key = torch.cat([self.key, key], dim=2)
            value = torch.cat([self.value, value], dim=2)
        self.key, self.value = key, value
        return key, value

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (``[N]`` long, repeats allowed) of the keys, values and mask."""
        if self.key is not None and self.value is not None:
            self.key = self.key.index_select(0, index)  # (N, H, S, Dh)
            self.value = self.value.index_select(0, index)
        if self.mask is not None:
            self.mask = (self.mask[0].index_select(0, index), self.mask[1].index_select(0, index))
        self.batched = None  # made again from the reordered keys and values when needed


class StaticKVCache:
    """Self-attention keys/values in buffers preallocated for ``capacity`` positions.

    The buffers ``[B, H, capacity, Dh]`` are allocated at the first :meth:`append` (which fixes
    ``B``, the dtype and the device); each step copies its keys/values into the next slots and
    attends to a view of the filled part, so decoding allocates no key/value storage per step.

    Args:
        capacity: most positions it holds (a decoder's ``max_length``).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.capacity = capacity
        self.length = 0
        self.buffers: tuple[Tensor, Tensor] | None = None
        self.packed: tuple[Tensor, Tensor | None] | None = None  # as in KVCache

    @property
    def key(self) -> Tensor | None:
        """``[B, H, length, Dh]`` keys held (a view of the buffer)."""
        return None if self.buffers is None else self.buffers[0][:, :, : self.length]

    @property
    def value(self) -> Tensor | None:
        """``[B, H, length, Dh]`` values held (a view of the buffer)."""
        return None if self.buffers is None else self.buffers[1][:, :, : self.length]

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``[B, H, n, Dh]`` keys/values at ``length ..``; returns views of all so far."""
        end = self.length + key.shape[2]
        if end > self.capacity:
            raise ValueError(
                f"the static cache holds {self.capacity} positions; appending reaches {end}"
            )
        if self.buffers is None:
            b, h, _, dh = key.shape
            self.buffers = (
                key.new_empty(b, h, self.capacity, dh),
                value.new_empty(b, h, self.capacity, value.shape[-1]),
            )
        keys, values = self.buffers
        keys[:, :, self.length : end] = key
        values[:, :, self.length : end] = value
        self.length = end
        return keys[:, :, :end], values[:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Make row ``i`` a copy of old row ``index[i]`` (``[N]`` long, repeats allowed).

        The same number of rows is reordered in place (beam search); a different number (beams
        expanded from samples) reallocates the buffers once.
        """
        if self.buffers is None:
            return
        keys, values = self.buffers
        filled = slice(0, self.length)
        if index.shape[0] == keys.shape[0]:
            # Advanced indexing copies first, so overlapping rows are read before written.
            keys[:, :, filled] = keys[index, :, filled]
            values[:, :, filled] = values[index, :, filled]
        else:
            self.buffers = (keys.index_select(0, index), values.index_select(0, index))


SelfCache = KVCache | StaticKVCache
"""Either self-attention cache (same ``length``/``append``/``reorder`` interface)."""


def needed_mask(mask: Tensor) -> Tensor | None:
    """``mask`` ``[B, S]``, or None when every position is valid (attention then skips masking).

    It reads the data, so a traced graph would bake the answer in: call it in eager code only.
    """
    return None if bool(mask.all()) else mask


AttentionMask = tuple[Tensor, Tensor]
"""``(allowed, has_key)``: SDPA's boolean mask ``[B, 1, N|1, S]`` (True = may attend; a query
with no valid key may attend to all, see :func:`_attention_mask`) and ``[B, 1, N|1, 1]``, False
where a query had no valid key (its output is zeroed)."""


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections (so external weights map 1:1).

    Args:
        dim: width of the queries and of the output.
        num_heads: number of heads; must divide ``dim``.
        context_dim: width of the keys/values source for cross-attention (defaults to ``dim``).
        dropout: attention-probability dropout, active in training only.
        bias: whether the projections carry a bias.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        context_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        kv_dim = dim if context_dim is None else context_dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self._packed: tuple[tuple[tuple[int, int], ...], Tensor, Tensor | None] | None = None

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

    def _self_attention_inputs(
        self, x: Tensor, key_mask: Tensor | None, causal: bool, cache: SelfCache | None
    ) -> tuple[Tensor, Tensor, AttentionMask | None]:
        """Keys/values of ``x`` (after the cached ones) and the mask for queries ``x``."""
        k, v = self._split(self.k_proj(x)), self._split(self.v_proj(x))
        if cache is not None:
            k, v = cache.append(k, v)
        b, n, s = x.shape[0], x.shape[1], k.shape[2]
        # Cached positions = keys minus new queries (the cache length before this step), read
        # from the keys' shape rather than `cache.length` so a traced ONNX graph keeps it dynamic.
        # A single query sits at the newest position and may see every key: no causal mask.
        return k, v, _attention_mask(b, n, s, s - n, key_mask, causal and n > 1, x.device)

    def cross_attention_inputs(
        self, context: Tensor, key_mask: Tensor | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, AttentionMask | None]:
        """Keys/values of ``context`` and its mask, computed once per cache (the context never
        changes while decoding: later steps reuse them and ignore ``context``/``key_mask``)."""
        if cache is not None and cache.key is not None and cache.value is not None:
            return cache.key, cache.value, cache.mask
        k, v = self._split(self.k_proj(context)), self._split(self.v_proj(context))
        mask = context_mask(key_mask, context.shape[0], context.shape[1], context.device)
        if cache is not None:
            cache.key, cache.value, cache.mask = k, v, mask
        return k, v, mask

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        cache: SelfCache | None = None,
    ) -> Tensor:
        """Attend from ``x`` to itself, or to ``context`` when given.

        Args:
            x: ``[B, N, dim]`` queries.
            context: ``[B, S, context_dim]`` keys/values source for cross-attention.
            key_mask: ``[B, S_total]`` bool, True at valid keys (S_total includes cached keys).
            causal: causal masking for self-attention; with a cache, query i sits at
                position ``cache.length + i``.
            cache: optional cache updated in place (cross-attention: a :class:`KVCache`).

        Returns:
            ``[B, N, dim]``. A query whose keys are all masked returns zeros rather than NaN,
            so a sample missing a whole modality never poisons the batch.
        """
        q = self._split(self.q_proj(x))
        if context is None:
            k, v, mask = self._self_attention_inputs(x, key_mask, causal, cache)
        else:
            if isinstance(cache, StaticKVCache):
                raise TypeError("a cross-attention cache is a KVCache, not a StaticKVCache")
            k, v, mask = self.cross_attention_inputs(context, key_mask, cache)
        dropout = self.dropout if self.training else 0.0
        if mask is None:
            return self._merge(attend(q, k, v, None, dropout))
        allowed, has_key = mask
        out = attend(q, k, v, allowed, dropout)
        return self._merge(out * has_key.to(out.dtype))

    def packed_in_proj(self) -> tuple[Tensor, Tensor | None]:
        """The q, k and v projections stacked into one ``[3 * dim, dim]`` weight (and bias).

        One GEMM instead of three per decoding step. The stacked copy is kept until any of the
        six tensors changes (their in-place version counters move, e.g. after an optimizer step
        or ``load_state_dict``), so it never serves stale weights.
        """
        parts = [self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]
        biases = [self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]
        tensors = parts + [b for b in biases if b is not None]
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._packed is None or self._packed[0] != key:
            with torch.no_grad():
                weight = torch.cat(parts)
                bias = (
                    None if biases[0] is None else torch.cat([b for b in biases if b is not None])
                )
            self._packed = (key, weight, bias)
        return self._packed[1], self._packed[2]

    def step(self, x: Tensor, cache: SelfCache) -> Tensor:
        """Cached self-attention of one new position: ``[B, 1, dim] -> [B, 1, dim]``.

        The lean decoding path (inference only, no dropout, no key mask): what
        ``forward(x, causal=True, cache=cache)`` computes, with one packed q/k/v GEMM and no
        mask (a single query at the newest position may see every key).
        """
        b = x.shape[0]
        if cache.packed is None:  # checking the weights' versions each step costs a GEMV
            cache.packed = self.packed_in_proj()
        qkv = F.linear(x, *cache.packed).view(b, 3, self.num_heads, 1, self.head_dim)
        k, v = cache.append(qkv[:, 1], qkv[:, 2])  # (B, H, S, Dh)
        out = F.scaled_dot_product_attention(qkv[:, 0], k, v)  # (B, H, 1, Dh)
        # (B, H, 1, Dh) -> (B, 1, H * Dh) is a view; F.linear skips the module call's overhead.
        return F.linear(out.view(b, 1, -1), self.out_proj.weight, self.out_proj.bias)

    def cross_step(
        self, x: Tensor, context: Tensor, key_mask: Tensor | None, cache: KVCache
    ) -> Tensor:
        """Cached cross-attention of one position: ``[B, 1, dim] -> [B, 1, dim]``; the context's
        keys/values (and mask) come from ``cache``, computed at the first step."""
        b = x.shape[0]
        k, v, mask = self.cross_attention_inputs(context, key_mask, cache)
        q = F.linear(x, self.q_proj.weight, self.q_proj.bias).view(b, self.num_heads, 1, -1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[0])
            out = out * mask[1].to(out.dtype)
        return F.linear(out.view(b, 1, -1), self.out_proj.weight, self.out_proj.bias)

    def _merge(self, out: Tensor) -> Tensor:
        """``(B, H, N, Dh) -> (B, N, dim)`` then the output projection."""
        b, _, n, _ = out.shape
        merged: Tensor = self.out_proj(out.transpose(1, 2).reshape(b, n, -1))
        return merged


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float) -> Tensor:
    """``F.scaled_dot_product_attention`` of ``[B, H, N, Dh]`` queries over ``[B, H, S, Dh]``
    keys/values (``mask``: bool, True = may attend); bf16 on CPU is computed in fp32.

    Why: at these lengths the CPU flash-attention kernel's bf16 backward is several times slower
    than its fp32 one, while attention is a small share of a step's FLOPs. Under
    ``training.precision: bf16-mixed`` a CLIP-shaped step (batch 32, one thread) went from 0.66
    to 0.50 CPU-seconds (fp32: 0.80); the projections and MLPs around it stay bf16, and the
    output keeps the input's dtype. Autocast is off inside, or it would cast back to bf16.
    """
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=dropout
        )
    return out.to(q.dtype)


def context_mask(
    key_mask: Tensor | None, b: int, s: int, device: torch.device
) -> AttentionMask | None:
    """The cross-attention :data:`AttentionMask` ``[B, 1, 1, S]`` of a ``[B, S]`` context mask
    (None: nothing masked)."""
    return _attention_mask(b, 1, s, 0, key_mask, False, device)


def _attention_mask(
    b: int,
    n: int,
    s: int,
    past: int,
    key_mask: Tensor | None,
    causal: bool,
    device: torch.device,
) -> AttentionMask | None:
    """The :data:`AttentionMask` for ``n`` queries at ``past ..`` over ``s`` keys, or None when
    nothing is masked. Without ``causal`` it is ``[B, 1, 1, S]`` (every query alike)."""
    if key_mask is None and not causal:
        return None
    allowed = torch.ones(b, 1, n if causal else 1, s, dtype=torch.bool, device=device)
    if key_mask is not None:
        if key_mask.shape != (b, s):
            raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}, expected {(b, s)}")
        allowed = allowed & key_mask[:, None, None, :].bool()
    if causal:
        q_pos = torch.arange(past, past + n, device=device)[:, None]
        k_pos = torch.arange(s, device=device)[None, :]
        allowed = allowed & (k_pos <= q_pos)[None, None]
    has_key = allowed.any(dim=-1, keepdim=True)  # (B, 1, N|1, 1)
    # Rows with no valid key would softmax over -inf only (NaN); let them attend freely and
    # zero the result afterwards.
    return allowed | ~has_key, has_key
