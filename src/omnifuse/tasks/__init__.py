"""Training tasks: a shared model plus one objective each -> ``{"loss", "*_loss", metrics}``.

Build them from a run config with :func:`build_tasks`; each task type registers itself with
:func:`register_task` (see ``docs/tasks.md``).
"""

from omnifuse.tasks.base import (
    Task,
    TaskContext,
    build_tasks,
    index_inputs,
    list_tasks,
    register_task,
    task_builder,
)
from omnifuse.tasks.captioning import CaptioningTask
from omnifuse.tasks.classification import ClassificationTask
from omnifuse.tasks.contrastive import ContrastiveTask
from omnifuse.tasks.masked_modeling import MaskedModelingTask
from omnifuse.tasks.matching import MatchingTask
from omnifuse.tasks.mlm import MLMTask

__all__ = [
    "CaptioningTask",
    "ClassificationTask",
    "ContrastiveTask",
    "MLMTask",
    "MaskedModelingTask",
    "MatchingTask",
    "Task",
    "TaskContext",
    "build_tasks",
    "index_inputs",
    "list_tasks",
    "register_task",
    "task_builder",
]
