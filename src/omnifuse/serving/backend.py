"""The seam between HTTP and a model: a :class:`Backend` answers batched task requests.

The server only talks to this protocol, so another runtime (an ONNX export) can serve the same
API by implementing it; :class:`TorchBackend` is the one over :class:`~omnifuse.inference.Pipeline`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omnifuse.errors import InferenceError
from omnifuse.export import OnnxPredictor
from omnifuse.inference import Pipeline
from omnifuse.tasks import PredictOptions, task_class


@dataclass(frozen=True)
class TaskInfo:
    """What ``GET /v1/models`` says about one task.

    Attributes:
        name: the task's key in the run config.
        type: its task type (``classification``, ``captioning`` ...).
        serves: the requests it answers (``classify``, ``caption`` ...).
        inputs: the modalities a prediction reads.
        required: inputs a prediction cannot do without.
        labels: class names of a classifier (None otherwise or when unknown).
    """

    name: str
    type: str
    serves: tuple[str, ...]
    inputs: tuple[str, ...]
    required: tuple[str, ...]
    labels: tuple[str, ...] | None = None


class Backend(Protocol):
    """What the server needs from a model runtime (called from one worker thread)."""

    name: str

    def describe(self) -> list[TaskInfo]:
        """Every task the run serves, in config order."""
        ...

    def predict(
        self,
        task: str,
        raws: Mapping[str, Sequence[Any]],
        options: PredictOptions,
        out_dir: Path | None,
    ) -> list[dict[str, Any]]:
        """One JSON-ready prediction per sample, from one batched forward pass."""
        ...


class TorchBackend:
    """:class:`Backend` over a loaded :class:`Pipeline` (PyTorch, eager)."""

    name = "torch"

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe

    def describe(self) -> list[TaskInfo]:
        return [self._info(name, kind) for name, kind in self.pipe.tasks.items()]

    def _info(self, name: str, kind: str) -> TaskInfo:
        task = self.pipe.task(name)
        labels = getattr(task, "class_names", None)
        return TaskInfo(
            name=name,
            type=kind,
            serves=tuple(task.serves),
            inputs=self.pipe.task_inputs(name),
            required=tuple(sorted(task.required)),
            labels=tuple(str(x) for x in labels) if labels else None,
        )

    def predict(
        self,
        task: str,
        raws: Mapping[str, Sequence[Any]],
        options: PredictOptions,
        out_dir: Path | None,
    ) -> list[dict[str, Any]]:
        return self.pipe.predict(task, options, out_dir, **raws)


class OnnxBackend:
    """:class:`Backend` over an ``omnifuse export --format onnx`` directory: onnxruntime runs
    the graphs, so torch is not in the request path's model execution (the run's processors
    still make the input tensors; see :mod:`omnifuse.export.runtime`). Greedy decoding only."""

    name = "onnx"

    def __init__(self, predictor: OnnxPredictor) -> None:
        self.predictor = predictor

    def describe(self) -> list[TaskInfo]:
        infos = []
        for name, meta in self.predictor.manifest["tasks"].items():
            inputs = tuple(sorted(meta["inputs"]))
            labels = meta.get("class_names")
            infos.append(
                TaskInfo(
                    name=name,
                    type=str(meta["type"]),
                    serves=tuple(task_class(str(meta["type"])).serves),
                    inputs=inputs,
                    required=inputs,  # an exported graph takes all of its task's inputs
                    labels=tuple(str(x) for x in labels) if labels else None,
                )
            )
        return infos

    def predict(
        self,
        task: str,
        raws: Mapping[str, Sequence[Any]],
        options: PredictOptions,
        out_dir: Path | None,
    ) -> list[dict[str, Any]]:
        if options.decoding.strategy != "greedy":
            raise InferenceError(
                f"the onnx backend decodes greedily only (got strategy "
                f"{options.decoding.strategy!r}); serve with --backend torch for beam/nucleus"
            )
        generate = dict(options.generate) or None
        return self.predictor.predict(task, options.top_k, out_dir, generate, **raws)


def as_backend(source: Pipeline | Backend) -> Backend:
    """A pipeline wrapped in :class:`TorchBackend`; a backend as it is."""
    return TorchBackend(source) if isinstance(source, Pipeline) else source
