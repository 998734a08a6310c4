"""The task interface: a shared :class:`MultimodalModel` plus one objective -> losses.

A :class:`Task` feeds the modalities it uses to the model, runs the heads it names, and returns a
dict holding ``"loss"`` (scalar, unweighted; the engine applies :attr:`Task.weight`), component
losses ending in ``_loss`` and detached scalar metrics. Tasks own only objective state (such as a
contrastive temperature); prediction modules are model heads, saved with the model.

Task types register with :func:`register_task`; :func:`build_tasks` turns the run config's
``tasks:`` section into modules.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor, nn

from omnifuse.config.loader import ConfigError
from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import task_problems, task_type
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextProcessor, TextTokenizer
from omnifuse.models.builder import Processors
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.types import Batch

Inputs = dict[str, dict[str, Tensor]]
"""Per-modality input dicts, as in ``batch["inputs"]``."""


class Task(nn.Module, ABC):
    """Base of every task: a named, weighted objective over some of a batch's modalities.

    Args:
        name: the task's key in the run config's ``tasks:``.
        weight: fixed loss weight (applied by the engine, not here).
        inputs: modalities fed to the model; the batch's others are dropped.
    """

    def __init__(self, name: str, weight: float, inputs: Sequence[str]) -> None:
        super().__init__()
        self.name = name
        self.weight = weight
        self.inputs = tuple(inputs)

    @abstractmethod
    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Losses and metrics of one batch.

        Returns:
            ``"loss"`` (scalar, unweighted, with a graph); optional component losses whose keys
            end in ``_loss``; every other entry is a detached scalar metric (e.g. ``accuracy``).
        """

    def select_inputs(self, batch: Batch, required: Sequence[str] = ()) -> Inputs:
        """``batch["inputs"]`` restricted to :attr:`inputs`.

        Raises:
            ValueError: a ``required`` modality is missing, or none of :attr:`inputs` is present.
        """
        available = batch["inputs"]
        selected = {m: available[m] for m in sorted(available) if m in self.inputs}
        missing = [m for m in required if m not in selected]
        if missing or not selected:
            raise ValueError(
                f"task {self.name!r} needs modalities {list(required or self.inputs)} in the "
                f"batch; it holds {sorted(available)}"
            )
        return selected

    def target(self, batch: Batch, field: str) -> Any:
        """``batch["targets"][field]``, or a KeyError naming the fields the batch has."""
        targets = batch["targets"]
        if field not in targets:
            raise KeyError(
                f"task {self.name!r} needs target field {field!r}; the batch has "
                f"{sorted(targets) or 'none'} (check data.fields and the dataset card)"
            )
        return targets[field]


def index_inputs(inputs: Mapping[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """Rows ``index`` of one modality's input dict (every tensor is batch-first).

    Args:
        inputs: e.g. ``{"input_ids": [B, L], "attention_mask": [B, L]}``.
        index: ``[K]`` long row indices (repeats allowed) or ``[B]`` bool row mask.

    Returns:
        The same keys with ``[K, ...]`` tensors.
    """
    return {key: value[index.to(value.device)] for key, value in inputs.items()}


def index_encoded(encoded: EncoderOutput, index: Tensor) -> EncoderOutput:
    """Rows ``index`` (``[K]`` long or ``[B]`` bool) of an encoder output."""
    return EncoderOutput(encoded.tokens[index], encoded.mask[index], encoded.pooled[index])


def present_rows(inputs: Inputs, modalities: Sequence[str]) -> Tensor | None:
    """``[B]`` bool, True where every one of ``modalities`` is present; None when all are."""
    keep: Tensor | None = None
    for modality in modalities:
        present = inputs[modality].get("present")
        if present is not None:
            keep = present.bool() if keep is None else keep & present.bool()
    return keep


def head_features(
    model: MultimodalModel, head: str, encoded: Mapping[str, EncoderOutput]
) -> EncoderOutput:
    """What ``head`` reads: the fusion of ``encoded`` or one modality's encoder output."""
    source = model.head_sources[head]
    if source == "fused":
        fused: EncoderOutput = model.fusion(encoded)
        return fused
    if source not in encoded:
        raise ValueError(f"head {head!r} reads {source!r}, which was not encoded")
    return encoded[source]


def run_head(model: MultimodalModel, head: str, inputs: Inputs) -> Tensor:
    """Encode ``inputs``, fuse if the head reads the fusion, and apply only ``head``."""
    output: Tensor = model.heads[head](head_features(model, head, model.encode(inputs)))
    return output


def text_tokenizer_of(processors: Processors, task: str) -> TextTokenizer:
    """The text processor's tokenizer, or a ValueError naming the task that needs it."""
    processor = processors.get("text")
    if not isinstance(processor, TextProcessor):
        raise ValueError(
            f"task {task!r} needs the text processor's tokenizer; configure model.encoders.text"
        )
    return processor.tokenizer


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class TaskContext:
    """What a task builder gets besides its config.

    Attributes:
        run: the whole run config.
        model: the model the task will train (its heads are looked up by name).
        processors: the model's processors (e.g. the tokenizer captioning targets need).
    """

    run: RunConfig
    model: MultimodalModel
    processors: Processors


TaskBuilder = Callable[[str, Any, TaskContext], Task]
"""``(task name, task config, context) -> Task``."""
B = TypeVar("B", bound=TaskBuilder)

_TASKS: dict[str, tuple[TaskBuilder, str]] = {}
_TASK_MODULES = (
    "omnifuse.tasks.classification",
    "omnifuse.tasks.contrastive",
    "omnifuse.tasks.matching",
    "omnifuse.tasks.mlm",
    "omnifuse.tasks.masked_modeling",
    "omnifuse.tasks.captioning",
    "omnifuse.tasks.video_generation",
)


def register_task(type: str, description: str) -> Callable[[B], B]:
    """Decorator registering a task builder under its config ``type``."""

    def wrap(fn: B) -> B:
        _TASKS[type] = (fn, description)
        return fn

    return wrap


def _ensure_registered() -> None:
    for module in _TASK_MODULES:
        importlib.import_module(module)


def list_tasks() -> dict[str, str]:
    """Task type -> description."""
    _ensure_registered()
    return {k: _TASKS[k][1] for k in sorted(_TASKS)}


def task_builder(type: str) -> TaskBuilder:
    """The builder registered for task ``type``.

    Raises:
        KeyError: an unknown type (the message lists the valid choices).
    """
    _ensure_registered()
    if type not in _TASKS:
        raise KeyError(f"unknown task type {type!r}; valid choices: {', '.join(sorted(_TASKS))}")
    return _TASKS[type][0]


def build_tasks(run: RunConfig, model: MultimodalModel, processors: Processors) -> dict[str, Task]:
    """One :class:`Task` per entry of ``run.tasks``, in config order.

    Tasks are checked against ``model.config`` (the model actually built, which may come from a
    checkpoint rather than ``run.model``).

    Raises:
        ConfigError: a task names a missing head, a head of the wrong type or an unknown modality.
    """
    problems = [p for n, t in run.tasks.items() for p in task_problems(n, t, model.config)]
    if problems:
        raise ConfigError(problems)
    context = TaskContext(run, model, processors)
    return {
        name: task_builder(task_type(cfg))(name, cfg, context) for name, cfg in run.tasks.items()
    }
