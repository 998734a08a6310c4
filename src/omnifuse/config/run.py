"""The root config of a run: model, data, tasks and training."""

from __future__ import annotations

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel
from omnifuse.config.data import DataConfig
from omnifuse.config.model import ModelConfig
from omnifuse.config.tasks import TaskConfig, task_problems
from omnifuse.config.training import TrainingConfig


class RunConfig(StrictModel):
    """Everything a run needs; this is what a YAML config file holds."""

    name: str = "omnifuse"
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: dict[str, TaskConfig] = Field(
        default_factory=dict, description="Named training tasks (see docs/tasks.md)."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _tasks_fit_model(self) -> RunConfig:
        """Every task's heads exist and have the right type; its modalities are configured."""
        problems = [
            line
            for name, task in self.tasks.items()
            for line in task_problems(name, task, self.model)
        ]
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self
