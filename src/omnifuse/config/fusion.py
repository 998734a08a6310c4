"""Fusion strategy configs: ``concat`` (early), ``parallel`` (late), ``hybrid`` (cross-attention)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from omnifuse.config.base import StrictModel, TransformerDims


class ConcatFusionConfig(TransformerDims):
    """Early fusion: modality-type embeddings + one joint Transformer over all tokens."""

    type: Literal["concat"] = "concat"


class ParallelFusionConfig(StrictModel):
    """Late fusion: streams stay separate; pooled vectors are combined at the end."""

    type: Literal["parallel"] = "parallel"
    dim: int = Field(default=64, gt=0)
    pooling: Literal["gated", "attention", "mean"] = "gated"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


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
