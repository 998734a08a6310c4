"""Task configs: which objective trains which head on which data (see the training issue)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from omnifuse.config.base import StrictModel


class TaskConfig(StrictModel):
    """A training task: an objective applied to a head's output."""

    type: Literal["classification", "contrastive"] = "classification"
    head: str | None = Field(default=None, description="Name of the head in model.heads.")
    target: str = Field(default="label", description="Manifest field holding the target.")
    weight: float = Field(default=1.0, ge=0.0)
