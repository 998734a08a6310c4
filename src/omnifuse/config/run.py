"""The root config of a run: model, data, tasks and training."""

from __future__ import annotations

from typing import Any

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

    @model_validator(mode="before")
    @classmethod
    def _task_data_inherits(cls, raw: Any) -> Any:
        """A task's ``data`` section overrides fields of the run's ``data``, so ``data.train=...``
        moves every task. A task naming its own ``train`` keeps none of the run's splits or card:
        those belong to the run's dataset."""
        if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
            return raw
        base = raw.get("data")
        if not isinstance(base, dict):
            return raw
        return {**raw, "tasks": {k: _inherit_data(v, base) for k, v in raw["tasks"].items()}}

    @model_validator(mode="after")
    def _tasks_fit_model(self) -> RunConfig:
        """Every task's heads exist and have the right type; its modalities are configured."""
        problems = [
            line
            for name, task in self.tasks.items()
            for line in task_problems(name, task, self.model)
        ]
        problems += self._multitask_problems()
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    def _multitask_problems(self) -> list[str]:
        """``ratios`` and ``curriculum`` name only the run's tasks; the curriculum ends in time."""
        multitask, problems = self.training.multitask, []
        named = {"ratios": list(multitask.ratios)}
        if multitask.curriculum is not None:
            named["curriculum.tasks"] = multitask.curriculum.tasks
        for field, names in named.items():
            unknown = sorted(set(names) - set(self.tasks))
            if unknown:
                problems.append(
                    f"training.multitask.{field} names unknown tasks {unknown}; "
                    f"the run's tasks: {', '.join(self.tasks)}"
                )
        steps = multitask.curriculum.steps if multitask.curriculum else 0
        if steps >= self.training.max_steps:
            problems.append(
                f"training.multitask.curriculum.steps={steps} leaves no step for the other "
                f"tasks: it must be below training.max_steps={self.training.max_steps}"
            )
        return problems


DATASET_FIELDS = ("train", "val", "test", "card")
"""Data fields that name one dataset: a task with its own ``train`` inherits none of them."""


def _inherit_data(task: Any, base: dict[str, Any]) -> Any:
    """``task`` (raw) with its ``data`` section completed from the run's ``base`` data."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        return task
    own = task["data"]
    inherited = {k: v for k, v in base.items() if "train" not in own or k not in DATASET_FIELDS}
    return {**task, "data": {**inherited, **own}}
