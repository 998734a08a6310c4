"""Task types: each owns its loss, batched predictions and scoring (see :class:`Task`).

Build them from a run config with :func:`build_tasks`; each task type is a :class:`Task`
subclass registered with :func:`register_task` (see ``docs/architecture.md``).
"""

from omnifuse.tasks.base import (
    Evaluated,
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    build_task,
    build_tasks,
    index_inputs,
    list_tasks,
    register_task,
    task_builder,
    task_class,
)
from omnifuse.tasks.captioning import CaptioningTask
from omnifuse.tasks.classification import ClassificationTask
from omnifuse.tasks.contrastive import ContrastiveTask
from omnifuse.tasks.grounding import SceneGroundingTask
from omnifuse.tasks.masked_modeling import MaskedModelingTask
from omnifuse.tasks.matching import MatchingTask
from omnifuse.tasks.mlm import MLMTask
from omnifuse.tasks.video_generation import VideoGenerationTask, VideoTask, VideoTokenizerTask

__all__ = [
    "CaptioningTask",
    "ClassificationTask",
    "ContrastiveTask",
    "Evaluated",
    "MLMTask",
    "MaskedModelingTask",
    "MatchingTask",
    "PredictOptions",
    "Prediction",
    "SceneGroundingTask",
    "ScoreOptions",
    "Scores",
    "Task",
    "TaskContext",
    "VideoGenerationTask",
    "VideoTask",
    "VideoTokenizerTask",
    "build_task",
    "build_tasks",
    "index_inputs",
    "list_tasks",
    "register_task",
    "task_builder",
    "task_class",
]
