"""Classification and projection heads over pooled features."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.config.heads import ClassificationHeadConfig, ProjectionHeadConfig
from omnifuse.layers import masked_mean
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import register_head


class ClassificationHead(nn.Module):
    """``[B, D] pooled -> [B, num_classes]`` logits (linear, or MLP when ``hidden_dim``).

    ``pooling="mean"`` reads the masked mean of the source's tokens ``[B, N, D]`` instead of its
    pooled vector.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        pooling: Literal["pooled", "mean"] = "pooled",
    ) -> None:
        super().__init__()
        self.pooling = pooling
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
        return self.net(pooled)  # type: ignore[no-any-return]


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


@register_head("projection", "L2-normalised linear projection for retrieval.")
def build_projection(config: ProjectionHeadConfig, in_dim: int) -> nn.Module:
    return ProjectionHead(in_dim, config.dim)
