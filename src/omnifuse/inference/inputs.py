"""Raw request inputs -> processed tensors, and the run's task objects with their class names.

What :class:`~omnifuse.inference.Pipeline` (and the evaluator, and the server) share so that
none of them repeats it: input checks in the order a user needs them (files first), and building
a task type with the class names of the dataset card its labels follow.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnifuse.config.data import DataConfig
from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import task_type
from omnifuse.errors import InferenceError
from omnifuse.inference.runs import card_classes
from omnifuse.models import MultimodalModel, Processors
from omnifuse.tasks import Task, TaskContext, task_class
from omnifuse.types import Inputs

RawInputs = Mapping[str, Sequence[Any] | None]
"""Raw inputs keyed by modality: one list entry (path, string, array) per sample."""


def process_values(
    processors: Processors, device: torch.device, modality: str, values: Any
) -> dict[str, Tensor]:
    """One modality's raw values -> the batch dict its encoder reads (on ``device``).

    Raises:
        InferenceError: not a list, empty, or a modality without an encoder.
        MediaError: a value that cannot be loaded (names the path).
    """
    if modality not in processors:
        configured = ", ".join(processors)
        raise InferenceError(f"the model has no {modality} encoder; configured: {configured}")
    if isinstance(values, str | Path | bytes) or not isinstance(values, Sequence):
        kind = type(values).__name__
        raise InferenceError(f"{modality}: pass a list with one entry per sample, got {kind}")
    if len(values) == 0:
        raise InferenceError(f"{modality}: got an empty list; pass at least one sample")
    batch = processors[modality](list(values))
    return {key: value.to(device) for key, value in batch.items()}


def process_request(
    processors: Processors, device: torch.device, task: Task, reads: Sequence[str], raws: RawInputs
) -> Inputs:
    """Raw inputs of a request for ``task`` (which reads ``reads``) -> processed inputs.

    Files are read first, so an unreadable one is reported with its path before anything else;
    a task that reads the fusion accepts any non-empty subset of its inputs.

    Raises:
        InferenceError: an input the task does not read, a missing required one, or lists of
            different lengths.
        MediaError: a value that cannot be loaded (names the path).
    """
    given = {m: v for m, v in raws.items() if v is not None}
    processors = task.request_processors(processors)
    inputs = {
        m: process_values(processors, device, m, given[m]) for m in sorted(given) if m in reads
    }
    problems = [f"it does not read {m}" for m in sorted(set(given) - set(reads))]
    problems += [f"missing input {m}" for m in task.required if m not in given]
    if problems or not given:
        reason = "; ".join(problems) or "no input given"
        raise InferenceError(f"task {task.name!r} reads {', '.join(reads)}: {reason}")
    sizes = {m: int(next(iter(batch.values())).shape[0]) for m, batch in inputs.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{m}: {n}" for m, n in sizes.items())
        raise InferenceError(f"inputs differ in length ({listing}); give one per sample")
    return inputs


def build_run_task(
    run: RunConfig,
    model: MultimodalModel,
    processors: Processors,
    name: str,
    data: DataConfig,
    warn: bool = False,
) -> Task:
    """Task ``name`` of the run as a task type object, its class names read from the card of
    ``data`` (whose label indices its predictions follow).

    Args:
        warn: warn when a classifier's class names are unavailable (predictions then give
            indices).
    """
    config = run.tasks[name]
    head = model.config.heads.get(str(getattr(config, "head", "")))
    classes = int(getattr(head, "num_classes", 0))
    kind = task_class(task_type(config))
    found = card_classes(data, str(getattr(config, "target", "label")), classes)
    if classes and kind.fixed_classes is None and found.names is None and warn:
        warnings.warn(
            f"class names of task {name!r} are unavailable ({found.reason}); labels are class "
            "indices",
            stacklevel=4,
        )
    known = {name: found.names} if classes and found.names is not None else {}
    return kind.from_config(name, config, TaskContext(run, model, processors, known))


def embedding_head(run: RunConfig, model: MultimodalModel, modality: str) -> str | None:
    """The projection head reading ``modality``: the one a task names first, else any."""
    named = [getattr(t, f, None) for t in run.tasks.values() for f in ("head_a", "head_b")]
    heads = [h for h in named if isinstance(h, str)]
    heads += sorted(n for n, c in model.config.heads.items() if c.type == "projection")
    return next((h for h in heads if model.head_sources.get(h) == modality), None)
