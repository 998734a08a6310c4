"""Fusion strategy configs: ``concat`` (early), ``parallel`` (late), ``hybrid`` (cross-attention).

See ``docs/fusion.md`` for what each strategy computes and how it treats a missing modality.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims


class ConcatFusionConfig(TransformerDims):
    """Early fusion: modality-type embeddings + a fusion [CLS] token + one joint Transformer
    over the concatenated tokens of every present modality."""

    type: Literal["concat"] = "concat"


class ParallelFusionConfig(StrictModel):
    """Late fusion: streams stay separate; pooled vectors are combined at the end.

    ``pooling``: ``gated`` (softmax over learned per-modality scalar gates), ``attention`` (a
    learned query attends over the modality vectors, ``num_heads`` heads), ``mean``.
    """

    type: Literal["parallel"] = "parallel"
    dim: int = Field(default=64, gt=0)
    pooling: Literal["gated", "attention", "mean"] = "gated"
    num_heads: int = Field(default=4, gt=0, description="Heads of the `attention` pooling only.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> ParallelFusionConfig:
        if self.pooling == "attention" and self.dim % self.num_heads != 0:
            raise ValueError(
                f"pooling='attention' needs dim={self.dim} divisible by "
                f"num_heads={self.num_heads}; pick a num_heads that divides dim"
            )
        return self


class HybridFusionConfig(TransformerDims):
    """Cross-attention between streams.

    ``co_attention``: every stream attends to the other streams (ViLBERT-style co-attention);
    ``resampler``: ``num_queries`` learned latents cross-attend to all streams (Perceiver/Flamingo).
    """

    type: Literal["hybrid"] = "hybrid"
    mode: Literal["co_attention", "resampler"] = "co_attention"
    num_queries: int = Field(default=16, gt=0, description="Latents (resampler mode only).")


FusionConfig = Annotated[
    ConcatFusionConfig | ParallelFusionConfig | HybridFusionConfig, Field(discriminator="type")
]
