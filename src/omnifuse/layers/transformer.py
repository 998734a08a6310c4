"""Transformer blocks, stacks and a cached decoder shared by every encoder, fusion and head.

One :class:`TransformerBlock` with flags (``cross_attention``, ``norm_first``) covers BERT-style
post-norm encoders, ViT-style pre-norm encoders, fusion layers with cross-attention, and causal
decoders with a KV cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnifuse.layers.attention import KVCache, MultiHeadAttention, SelfCache, StaticKVCache

LayerCache = tuple[SelfCache, KVCache]
"""One block's (self-attention, cross-attention) cache."""

Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    """Two-layer feed-forward network ``fc2(act(fc1(x)))``."""

    def __init__(
        self, dim: int, hidden_dim: int, activation: Activation = "gelu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.activation = activation
        self.act = _ACTIVATIONS[activation]
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
        return out


class TransformerBlock(nn.Module):
    """Self-attention (+ optional cross-attention) + MLP, pre-norm or post-norm.

    Args:
        dim: model width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        dropout: dropout on residual branches and attention probabilities.
        cross_attention: add a cross-attention sub-layer attending to a ``context``.
        context_dim: width of that context (defaults to ``dim``).
        norm_first: pre-norm (ViT, GPT) when True, post-norm (original BERT) when False.
        norm_eps: LayerNorm epsilon (1e-12 matches BERT/ViT checkpoints, 1e-5 PyTorch default).
        activation: MLP activation.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cross_attention: bool = False,
        context_dim: int | None = None,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.attn_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn: MultiHeadAttention | None = None
        self.cross_norm: nn.LayerNorm | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(dim, num_heads, context_dim, dropout=dropout)
            self.cross_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), activation, dropout)
        self.mlp_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.drop = nn.Dropout(dropout)

    def _residual(self, x: Tensor, norm: nn.Module, fn: Callable[[Tensor], Tensor]) -> Tensor:
        if self.norm_first:
            out: Tensor = x + self.drop(fn(norm(x)))
        else:
            out = norm(x + self.drop(fn(x)))
        return out

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        causal: bool = False,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """Args:
            x: ``[B, N, dim]``.
            mask: ``[B, N(+cached)]`` bool, True at valid positions of ``x``.
            context: ``[B, S, context_dim]`` for cross-attention.
            context_mask: ``[B, S]`` bool.
            causal: causal self-attention.
            cache: (self-attention cache, cross-attention cache) for incremental decoding.

        Returns:
            ``[B, N, dim]``.
        """
        self_cache, cross_cache = (None, None) if cache is None else cache
        x = self._residual(
            x,
            self.attn_norm,
            lambda h: self.attn(h, key_mask=mask, causal=causal, cache=self_cache),
        )
        if self.cross_attn is not None and self.cross_norm is not None:
            if context is None:
                raise ValueError("this block has cross-attention and needs a `context`")
            cross = self.cross_attn
            x = self._residual(
                x,
                self.cross_norm,
                lambda h: cross(h, context=context, key_mask=context_mask, cache=cross_cache),
            )
        return self._residual(x, self.mlp_norm, self.mlp)

    def step(
        self, x: Tensor, cache: LayerCache, context: Tensor | None, context_mask: Tensor | None
    ) -> Tensor:
        """One decoding position ``[B, 1, dim]`` through a pre-norm block, in eval mode.

        Equals ``forward(x, context=..., context_mask=..., causal=True, cache=cache)`` (tested)
        with fewer operations: packed q/k/v, no masks to build, no dropout calls.
        """
        self_cache, cross_cache = cache
        x = x + self.attn.step(_layer_norm(self.attn_norm, x), self_cache)
        if self.cross_attn is not None and self.cross_norm is not None:
            if context is None:
                raise ValueError("this block has cross-attention and needs a `context`")
            x = x + self.cross_attn.cross_step(
                _layer_norm(self.cross_norm, x), context, context_mask, cross_cache
            )
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        hidden = self.mlp.act(F.linear(_layer_norm(self.mlp_norm, x), fc1.weight, fc1.bias))
        return x + F.linear(hidden, fc2.weight, fc2.bias)


def _layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """``norm(x)`` without the module call (the lean step runs it thirteen times per token)."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class StackDims(Protocol):
    """The width/depth fields a config section gives a :class:`TransformerStack`
    (``config.base.TransformerDims`` and its subclasses satisfy it)."""

    @property
    def dim(self) -> int: ...

    @property
    def num_layers(self) -> int: ...

    @property
    def num_heads(self) -> int: ...

    @property
    def mlp_ratio(self) -> float: ...

    @property
    def dropout(self) -> float: ...


class TransformerStack(nn.Module):
    """A stack of :class:`TransformerBlock` with an optional final LayerNorm.

    Used as encoder (``causal=False``) and as decoder (``cross_attention=True``, ``causal=True``,
    with a cache from :meth:`new_cache`). Gradient checkpointing trades compute for memory and
    does not change outputs.
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cross_attention: bool = False,
        context_dim: int | None = None,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        activation: Activation = "gelu",
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(
                dim,
                num_heads,
                mlp_ratio,
                dropout,
                cross_attention,
                context_dim,
                norm_first,
                norm_eps,
                activation,
            )
            for _ in range(num_layers)
        )
        self.norm: nn.Module = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()
        self.gradient_checkpointing = False

    @classmethod
    def from_dims(
        cls,
        dims: StackDims,
        *,
        cross_attention: bool = False,
        context_dim: int | None = None,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        activation: Activation = "gelu",
    ) -> TransformerStack:
        """The stack a config section describes (width, depth, heads, MLP ratio, dropout).

        A post-norm stack (``norm_first=False``) gets no final LayerNorm: its blocks already end
        in one. Building through here or the constructor gives the same parameters, names and
        seeded initialisation.

        Args:
            dims: the config section.
            cross_attention, context_dim, norm_first, norm_eps, activation: as in
                :class:`TransformerBlock`.
        """
        return cls(
            dims.dim,
            dims.num_layers,
            dims.num_heads,
            dims.mlp_ratio,
            dims.dropout,
            cross_attention=cross_attention,
            context_dim=context_dim,
            norm_first=norm_first,
            norm_eps=norm_eps,
            activation=activation,
            final_norm=norm_first,
        )

    def new_cache(self, capacity: int | None = None) -> list[LayerCache]:
        """Fresh per-layer (self, cross) caches for incremental decoding.

        Args:
            capacity: None gives growing :class:`KVCache` s; a number gives self-attention
                :class:`StaticKVCache` s preallocated for that many positions (same outputs,
                no per-step concatenation).
        """
        if capacity is None:
            return [(KVCache(), KVCache()) for _ in self.layers]
        return [(StaticKVCache(capacity), KVCache()) for _ in self.layers]

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        causal: bool = False,
        cache: Sequence[LayerCache] | None = None,
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Run all blocks. ``[B, N, dim] -> [B, N, dim]``.

        With ``return_hidden`` also returns the input and each block's output (before the final
        norm), the ``hidden_states`` convention of transformers.
        """
        if cache is None and not return_hidden and encodes_leanly(self, mask, context, causal):
            # Imported here: fused_step builds on this module's blocks.
            from omnifuse.layers.fused_step import fused_encoder

            return fused_encoder(self)(x)
        hidden = [x]
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, mask, context, context_mask, causal, use_reentrant=False)
            else:
                x = layer(x, mask, context, context_mask, causal, layer_cache)
            hidden.append(x)
        out = self.norm(x)
        return (out, hidden) if return_hidden else out

    def step(
        self,
        x: Tensor,
        cache: Sequence[LayerCache],
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """One cached decoding position ``[B, 1, dim] -> [B, 1, dim]`` (final norm included).

        The lean path of incremental decoding, for pre-norm stacks in eval mode (see
        :func:`steps_leanly`): the same outputs as ``forward(x, context=..., causal=True,
        cache=cache)``.
        """
        for layer, layer_cache in zip(self.layers, cache, strict=True):
            x = cast(TransformerBlock, layer).step(x, layer_cache, context, context_mask)
        out: Tensor = self.norm(x)
        return out


def steps_leanly(stack: TransformerStack, head: nn.Module | None = None) -> bool:
    """Whether :meth:`TransformerStack.step` (and the fused step over it and ``head``) serves
    this stack: pre-norm blocks in eval mode (dropout off) whose projections, like ``head``, are
    plain ``nn.Linear`` layers; otherwise decoders run the general ``forward`` with the cache.

    The lean and fused steps read ``.weight`` directly, which would skip what a wrapper adds: a
    peft LoRA layer (``model.adapters``) keeps its ``B A`` beside the base weight.
    """
    if stack.training or not (head is None or type(head) is nn.Linear):
        return False
    return all(
        isinstance(layer, TransformerBlock)
        and layer.norm_first
        and all(type(p) is nn.Linear for p in _projections(layer))
        for layer in stack.layers
    )


def _projections(block: TransformerBlock) -> list[nn.Module]:
    """Every projection of ``block``: attention q/k/v/out (self and cross) and the MLP's."""
    attentions = [block.attn] if block.cross_attn is None else [block.attn, block.cross_attn]
    out: list[nn.Module] = [block.mlp.fc1, block.mlp.fc2]
    for attn in attentions:
        out += [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj]
    return out


def encodes_leanly(
    stack: TransformerStack, mask: Tensor | None, context: Tensor | None, causal: bool
) -> bool:
    """Whether ``stack.forward`` may run :class:`~omnifuse.layers.fused_step.FusedEncoder`:
    no gradients recorded, no autocast, a pre-norm self-attention stack in eval mode, no mask, no
    context, not causal, and not being traced (ONNX export) or compiled (its oneDNN calls are not
    exportable). The results equal the module path's to float rounding (tested to 1e-5)."""
    if torch.is_grad_enabled() or mask is not None or context is not None or causal:
        return False
    if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
        return False  # the module path's attention computes bf16 in fp32 (`attend`)
    if torch._C._get_tracing_state() is not None or torch.compiler.is_compiling():
        return False
    return steps_leanly(stack) and all(
        cast(TransformerBlock, layer).cross_attn is None for layer in stack.layers
    )


def set_gradient_checkpointing(module: nn.Module, enabled: bool = True) -> None:
    """Switch activation recomputation on every submodule that supports it (outputs unchanged)."""
    for sub in module.modules():
        if hasattr(sub, "gradient_checkpointing"):
            setattr(sub, "gradient_checkpointing", enabled)  # noqa: B010 - typed as Tensor|Module


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over valid positions. ``[B, N, D], [B, N] -> [B, D]``; all-masked rows give zeros."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Fixed sine/cosine position table ``[length, dim]`` (Transformer, whisper audio)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32) * (-torch.log(torch.tensor(1e4)) / dim)
    )
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table
