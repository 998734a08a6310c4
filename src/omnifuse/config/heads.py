"""Prediction head configs. A head reads the fused output or one modality's encoder output."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from omnifuse.config.base import StrictModel


class ClassificationHeadConfig(StrictModel):
    """MLP (or linear) classifier over a pooled vector."""

    type: Literal["classification"] = "classification"
    num_classes: int = Field(gt=1)
    source: str = Field(default="fused", description="'fused' or a modality name.")
    hidden_dim: int | None = Field(default=None, gt=0, description="None = a single linear layer.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class ProjectionHeadConfig(StrictModel):
    """Linear projection to a shared embedding space (contrastive retrieval), L2-normalised."""

    type: Literal["projection"] = "projection"
    dim: int = Field(default=64, gt=0)
    source: str = Field(default="fused", description="'fused' or a modality name.")


HeadConfig = Annotated[ClassificationHeadConfig | ProjectionHeadConfig, Field(discriminator="type")]
