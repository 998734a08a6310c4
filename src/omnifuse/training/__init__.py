"""The training engine: Lightning over tasks, multi-task sampling and weighting, fine-tuning,
distributed training, crash-safe checkpoints and resume (see ``docs/training.md``).

Example:
    >>> from omnifuse.config import load_config
    >>> from omnifuse.training import train
    >>> result = train(load_config("my_run.yaml"), run_dir=Path("runs/demo"))
    >>> model, processors, config = omnifuse.load(result.model_dir)
"""

from omnifuse.training.data import MultiTaskLoader, StepBatch
from omnifuse.training.module import NonFiniteLossError, OmnifuseModule
from omnifuse.training.run import (
    TrainingPreempted,
    TrainResult,
    build_module,
    build_trainer,
    train,
)
from omnifuse.training.samplers import TaskSampler, build_sampler
from omnifuse.training.weighting import LossWeighting, UncertaintyWeighting, pcgrad

__all__ = [
    "LossWeighting",
    "MultiTaskLoader",
    "NonFiniteLossError",
    "OmnifuseModule",
    "StepBatch",
    "TaskSampler",
    "TrainResult",
    "TrainingPreempted",
    "UncertaintyWeighting",
    "build_module",
    "build_sampler",
    "build_trainer",
    "pcgrad",
    "train",
]
