"""The root config of a run: model, data, tasks and training."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel
from omnifuse.config.model import ModelConfig


class DataConfig(StrictModel):
    """Where samples come from and how they are batched."""

    train: Path | None = Field(default=None, description="Training manifest (JSONL) or shard dir.")
    val: Path | None = Field(default=None, description="Validation manifest or shard dir.")
    batch_size: int = Field(default=16, gt=0)
    num_workers: int = Field(default=0, ge=0)


class TaskConfig(StrictModel):
    """A training task: an objective applied to a head's output."""

    type: Literal["classification", "contrastive"] = "classification"
    head: str | None = Field(default=None, description="Name of the head in model.heads.")
    target: str = Field(default="label", description="Manifest field holding the target.")
    weight: float = Field(default=1.0, ge=0.0)


class TrainingConfig(StrictModel):
    """Optimisation settings."""

    max_steps: int = Field(default=100, gt=0)
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    seed: int = 0
    precision: Literal["32-true", "bf16-mixed"] = "32-true"


class RunConfig(StrictModel):
    """Everything a run needs; this is what a YAML config file holds."""

    name: str = "omnifuse"
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: dict[str, TaskConfig] = Field(default_factory=dict)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _tasks_use_heads(self) -> RunConfig:
        heads = sorted(self.model.heads)
        for name, task in self.tasks.items():
            if task.head is not None and task.head not in self.model.heads:
                raise ValueError(
                    f"tasks.{name}.head={task.head!r} is not in model.heads; "
                    f"valid choices: {', '.join(repr(h) for h in heads) or '(no heads configured)'}"
                )
        return self
