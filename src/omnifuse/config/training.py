"""The training section of a run config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from omnifuse.config.base import StrictModel


class TrainingConfig(StrictModel):
    """Optimisation settings."""

    max_steps: int = Field(default=100, gt=0)
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    seed: int = 0
    precision: Literal["32-true", "bf16-mixed"] = "32-true"
