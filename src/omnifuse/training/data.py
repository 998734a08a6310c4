"""Multi-task data: one stream per distinct dataset, a task sampler, resumable as a whole.

Tasks whose data (``tasks.<name>.data``, else the run's ``data``) is the same share one
*stream*, so a step training two of them on the same dataset feeds them the same batch. Each
stream is a :class:`~omnifuse.data.streaming.StreamingLoader` that runs epoch after epoch; the
:class:`MultiTaskLoader` draws the step's tasks, pulls one batch from each stream they need and
yields a :class:`StepBatch`. Its ``state_dict`` holds the sampler's draws and every stream's exact
position, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from omnifuse.config.data import DataConfig
from omnifuse.config.run import RunConfig
from omnifuse.data.datamodule import OmnifuseDataModule, build_loader
from omnifuse.data.streaming import StreamingLoader
from omnifuse.models.builder import Processors
from omnifuse.training.samplers import TaskSampler, build_sampler
from omnifuse.types import Batch

STATE_VERSION = 1


class StepBatch(TypedDict):
    """What one training step gets.

    Batches are keyed by stream, not by task: Lightning copies the containers when it moves a
    batch to the device, so tasks sharing a stream must look theirs up to share one copy.

    Attributes:
        tasks: The tasks trained this step, in config order.
        batches: Stream name -> its batch, for the streams of :attr:`tasks`.
        stream_of: Task -> the name of its stream.
        samples: Distinct samples in the step (summed over the streams used).
    """

    tasks: list[str]
    batches: dict[str, Batch]
    stream_of: dict[str, str]
    samples: int


def task_batch(step: StepBatch, task: str) -> Batch:
    """The batch ``task`` trains on in ``step``."""
    return step["batches"][step["stream_of"][task]]


@dataclass
class Stream:
    """One dataset and the tasks that train on it.

    Attributes:
        name: ``data`` (the run's data section) or ``tasks.<first task>.data``.
        data: Its data config.
        tasks: Tasks reading it, in config order.
        module: The data module building its loaders.
    """

    name: str
    data: DataConfig
    tasks: list[str]
    module: OmnifuseDataModule


def task_data(run: RunConfig, task: str) -> DataConfig:
    """The data config of ``task``: its own ``data`` section or the run's."""
    own = getattr(run.tasks[task], "data", None)
    return own if isinstance(own, DataConfig) else run.data


def build_streams(run: RunConfig, tasks: Sequence[str], processors: Processors) -> list[Stream]:
    """Group ``tasks`` by identical data config (config order).

    A stream loads only the modalities its tasks read: decoding a video or an audio file for a
    task that drops it would cost more than the task's own step.
    """
    groups: dict[str, list[str]] = {}
    for task in tasks:
        key = json.dumps(task_data(run, task).model_dump(mode="json"), sort_keys=True)
        groups.setdefault(key, []).append(task)
    streams = []
    for members in groups.values():
        data = task_data(run, members[0])
        name = "data" if data is run.data else f"tasks.{members[0]}.data"
        used = {m for t in members for m in run.tasks[t].loaded_modalities(run.model)}
        loaded = {m: p for m, p in processors.items() if m in used}
        streams.append(Stream(name, data, members, OmnifuseDataModule(data, processors=loaded)))
    return streams


def val_loader(stream: Stream, world_size: int) -> StreamingLoader:
    """The validation loader of ``stream`` (fixed order, no augmentation).

    With several ranks every rank gets the same number of batches (objectives that gather across
    ranks would otherwise wait forever on a rank that has finished); this drops at most
    ``world_size - 1`` samples.
    """
    if world_size <= 1:
        return stream.module.val_dataloader()
    module = stream.module
    module.setup()
    if stream.data.val is None:
        raise ValueError(f"{stream.name}.val is not set")
    data = stream.data.model_copy(
        update={"shuffle": False, "augment": False, "drop_last": False, "bucket_by_length": 0}
    )
    return build_loader(
        stream.data.val,
        module.processors,
        module.fields,
        data,
        train=True,  # only for the even split: shuffle and augmentation are off in ``data``
        card=module.card,
        world_size=world_size,  # the rank is resolved once the process group exists
    )


class MultiTaskLoader:
    """Infinite, resumable iterable of :class:`StepBatch` es.

    ``len()`` is the number of batches Lightning should treat as one epoch (the whole run);
    Lightning then does not prefetch, so a checkpoint's state matches the batches trained on.

    Args:
        loaders: Stream name -> its training loader.
        stream_of: Task -> the name of its stream.
        sampler: Chooses each step's tasks.
        tasks_per_step: Tasks per step (clipped to the number of tasks).
        length: Batches per Lightning epoch.
    """

    def __init__(
        self,
        loaders: Mapping[str, StreamingLoader],
        stream_of: Mapping[str, str],
        sampler: TaskSampler,
        tasks_per_step: int,
        length: int,
    ) -> None:
        self.loaders = dict(loaders)
        self.stream_of = dict(stream_of)
        self.sampler = sampler
        self.tasks_per_step = tasks_per_step
        self.length = length
        self._iters: dict[str, Iterator[Batch]] = {}

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[StepBatch]:
        while True:
            yield self.next_step()

    def next_step(self) -> StepBatch:
        """Draw the tasks of a step and fetch their batches."""
        tasks = self.sampler.draw(self.tasks_per_step)
        fetched: dict[str, Batch] = {}
        for task in tasks:
            stream = self.stream_of[task]
            if stream not in fetched:
                fetched[stream] = self._next_batch(stream)
        samples = sum(len(b["ids"]) for b in fetched.values())
        stream_of = {t: self.stream_of[t] for t in tasks}
        return StepBatch(tasks=tasks, batches=fetched, stream_of=stream_of, samples=samples)

    def _next_batch(self, stream: str) -> Batch:
        """The stream's next batch, starting its next epoch when one ends."""
        for attempt in range(2):
            if attempt or stream not in self._iters:
                self._iters[stream] = iter(self.loaders[stream])
            try:
                return next(self._iters[stream])
            except StopIteration:
                continue
        raise RuntimeError(
            f"training stream {stream!r} yields no batches (is the dataset smaller than one "
            "batch with drop_last=true?)"
        )

    def dataset_sizes(self) -> dict[str, int]:
        """Task -> training samples in its dataset."""
        return {t: len(self.loaders[s].stream.source) for t, s in self.stream_of.items()}

    def state_dict(self) -> dict[str, Any]:
        """The sampler's draws and every stream's position."""
        return {
            "version": STATE_VERSION,
            "sampler": self.sampler.state_dict(),
            "streams": {name: loader.state_dict() for name, loader in self.loaders.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the next step is the one after the saved state).

        Raises:
            ValueError: a state of another format or for other streams.
        """
        if state.get("version") != STATE_VERSION or set(state["streams"]) != set(self.loaders):
            raise ValueError(
                f"cannot resume the multi-task loader: the checkpoint has streams "
                f"{sorted(state.get('streams', {}))}, this run has {sorted(self.loaders)}"
            )
        self.sampler.load_state_dict(state["sampler"])
        for name, loader in self.loaders.items():
            loader.load_state_dict(dict(state["streams"][name]))
        self._iters = {}


def build_train_loader(run: RunConfig, streams: Sequence[Stream], length: int) -> MultiTaskLoader:
    """The :class:`MultiTaskLoader` of ``streams`` with the run's task sampler.

    Raises:
        ValueError: a stream without ``train`` data.
    """
    missing = [s.name for s in streams if s.data.train is None]
    if missing:
        raise ValueError(
            f"{', '.join(m + '.train' for m in missing)} is not set; every task needs training data"
        )
    loaders = {s.name: s.module.train_dataloader() for s in streams}
    streams_of = {t: s.name for s in streams for t in s.tasks}
    stream_of = {t: streams_of[t] for t in run.tasks if t in streams_of}  # config order
    sizes = {t: len(loaders[s].stream.source) for t, s in stream_of.items()}
    mt = run.training.multitask
    curriculum = None
    if mt.curriculum is not None:  # draws are per batch; the curriculum counts optimiser steps
        draws = mt.curriculum.steps * run.training.grad_accumulation
        curriculum = (draws, mt.curriculum.tasks)
    sampler = build_sampler(
        mt.sampler, sizes, mt.temperature, run.training.seed, mt.ratios, curriculum
    )
    k = len(stream_of) if mt.tasks_per_step == "all" else mt.tasks_per_step
    return MultiTaskLoader(loaders, stream_of, sampler, k, length)
