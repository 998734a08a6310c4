"""The root config of a run: model, data, tasks and training."""

from __future__ import annotations

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel
from omnifuse.config.data import DataConfig
from omnifuse.config.model import ModelConfig
from omnifuse.config.tasks import TaskConfig
from omnifuse.config.training import TrainingConfig


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
