"""Classification and projection heads over pooled features, and a per-token classifier."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.config.heads import (
    ClassificationHeadConfig,
    ProjectionHeadConfig,
    TokenClassificationHeadConfig,
)
from omnifuse.layers import masked_mean
from omnifuse.layers.attention import attend
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import register_head

Pooling = Literal["pooled", "mean", "attention"]


class AttentionPool(nn.Module):
    """One learned query attending over the valid tokens: ``[B, N, D], [B, N] -> [B, D]``.

    Why: a mean weighs every patch alike, so "the shape of the largest object" must be read
    out of a blend of all objects and the background; a query can weigh the patches that
    matter (open_clip's attentional pooler, CoCa; here one query, ``heads`` heads).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            heads = 1
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(1, heads, 1, dim // heads) * dim**-0.5)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        b, n, d = tokens.shape
        k, v = self.kv(self.norm(tokens)).view(b, n, 2, self.heads, d // self.heads).unbind(2)
        keep = None if mask is None else mask[:, None, None, :]
        q = self.query.expand(b, -1, -1, -1)
        pooled = attend(q, k.transpose(1, 2), v.transpose(1, 2), keep, 0.0)  # [B, H, 1, Dh]
        return self.out(pooled.reshape(b, d))  # type: ignore[no-any-return]


class ClassificationHead(nn.Module):
    """``[B, D] pooled -> [B, num_classes]`` logits (linear, or MLP when ``hidden_dim``).

    ``pooling="mean"`` reads the masked mean of the source's tokens ``[B, N, D]`` instead of its
    pooled vector; ``pooling="attention"`` an :class:`AttentionPool` over them.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        pooling: Pooling = "pooled",
        pool_heads: int = 4,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.pool = AttentionPool(in_dim, pool_heads) if pooling == "attention" else None
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_dim is not None:
            layers += [nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, features: EncoderOutput) -> Tensor:
        pooled = features.pooled
        if self.pooling == "mean":
            pooled = masked_mean(features.tokens, features.mask)
        elif self.pool is not None:
            pooled = self.pool(features.tokens, features.mask)
        return self.net(pooled)  # type: ignore[no-any-return]


class TokenClassificationHead(nn.Module):
    """``tokens [B, N, D] -> [B, N, num_classes]`` logits, the same classifier at every token
    (linear, or MLP when ``hidden_dim``); padding positions get logits too (the task masks)."""

    def __init__(self, in_dim: int, num_classes: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden_dim is not None:
            layers += [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, features: EncoderOutput) -> Tensor:
        return self.net(features.tokens)  # type: ignore[no-any-return]


class ProjectionHead(nn.Module):
    """``[B, D] pooled -> [B, dim]`` unit-norm embedding for retrieval/contrastive learning."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim, bias=False)

    def forward(self, features: EncoderOutput) -> Tensor:
        return F.normalize(self.proj(features.pooled), dim=-1)


@register_head("classification", "Linear/MLP classifier over the pooled vector.")
def build_classification(config: ClassificationHeadConfig, in_dim: int) -> nn.Module:
    return ClassificationHead(
        in_dim, config.num_classes, config.hidden_dim, config.dropout, config.pooling
    )


@register_head("token_classification", "Linear/MLP classifier applied to every token.")
def build_token_classification(config: TokenClassificationHeadConfig, in_dim: int) -> nn.Module:
    return TokenClassificationHead(in_dim, config.num_classes, config.hidden_dim)


@register_head("projection", "L2-normalised linear projection for retrieval.")
def build_projection(config: ProjectionHeadConfig, in_dim: int) -> nn.Module:
    return ProjectionHead(in_dim, config.dim)
