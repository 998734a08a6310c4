"""Multi-head attention on top of ``torch.nn.functional.scaled_dot_product_attention``.

One module serves self-attention, cross-attention and cached incremental decoding (whisper's
``MultiHeadAttention(x, xa)`` idea): pass ``context`` for cross-attention, ``cache`` to reuse keys
and values across decoding steps.

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
    """

    key: Tensor | None = None
    value: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.key is None else int(self.key.shape[2])


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

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

    def _keys_values(
        self, source: Tensor, cache: KVCache | None, static: bool
    ) -> tuple[Tensor, Tensor]:
        """Project keys/values, appending to (self-attn) or reusing (cross-attn) the cache."""
        if cache is not None and static and cache.key is not None and cache.value is not None:
            return cache.key, cache.value  # cross-attention context never changes while decoding
        k, v = self._split(self.k_proj(source)), self._split(self.v_proj(source))
        if cache is not None:
            if not static and cache.key is not None and cache.value is not None:
                k = torch.cat([cache.key, k], dim=2)
                v = torch.cat([cache.value, v], dim=2)
            cache.key, cache.value = k, v
        return k, v

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Attend from ``x`` to itself, or to ``context`` when given.

        Args:
            x: ``[B, N, dim]`` queries.
            context: ``[B, S, context_dim]`` keys/values source for cross-attention.
            key_mask: ``[B, S_total]`` bool, True at valid keys (S_total includes cached keys).
            causal: causal masking for self-attention; with a cache, query i sits at
                position ``cache.length + i``.
            cache: optional :class:`KVCache` updated in place.

        Returns:
            ``[B, N, dim]``. A query whose keys are all masked returns zeros rather than NaN,
            so a sample missing a whole modality never poisons the batch.
        """
        b, n, _ = x.shape
        static = context is not None
        q = self._split(self.q_proj(x))
        k, v = self._keys_values(x if context is None else context, cache, static)
        s = k.shape[2]
        # Cached positions = keys minus new queries (the cache length before this step), read
        # from the keys' shape rather than `cache.length` so a traced ONNX graph keeps it dynamic.
        past = 0 if static else s - n
        allowed = _build_mask(b, n, s, past, key_mask, causal and not static, x.device)
        dropout = self.dropout if self.training else 0.0
        if allowed is None:
            return self._merge(attend(q, k, v, None, dropout))
        has_key = allowed.any(dim=-1, keepdim=True)  # (B, 1|H, N, 1)
        # Rows with no valid key would softmax over -inf only (NaN); let them attend freely and
        # zero the result afterwards.
        safe = allowed | ~has_key
        out = attend(q, k, v, safe, dropout)
        return self._merge(out * has_key.to(out.dtype))

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


def _build_mask(
    b: int,
    n: int,
    s: int,
    past: int,
    key_mask: Tensor | None,
    causal: bool,
    device: torch.device,
) -> Tensor | None:
    """Boolean ``[B, 1, N, S]`` mask (True = may attend) or None when nothing is masked."""
    if key_mask is None and not causal:
        return None
    allowed = torch.ones(b, 1, n, s, dtype=torch.bool, device=device)
    if key_mask is not None:
        if key_mask.shape != (b, s):
            raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}, expected {(b, s)}")
        allowed = allowed & key_mask[:, None, None, :].bool()
    if causal:
        q_pos = torch.arange(past, past + n, device=device)[:, None]
        k_pos = torch.arange(s, device=device)[None, :]
        allowed = allowed & (k_pos <= q_pos)[None, None]
    return allowed
