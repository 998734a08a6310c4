"""The task type: one registered class per ``type`` of ``tasks:`` that owns training, prediction
and scoring.

A :class:`Task` is built per configured task (``Task.from_config``) and answers three questions,
so the trainer, ``Pipeline``, ``omnifuse predict``, ``omnifuse eval`` and the server never
dispatch on a type string:

- :meth:`Task.loss` — ``{"loss", "*_loss", metrics}`` of one training batch (``forward`` calls
  it, so the engine just calls the module);
- :meth:`Task.predict` — one JSON-ready dict per sample of a processed batch, from one forward
  pass (the tensors it holds, e.g. embeddings or clip frames, are made JSON by the caller);
- :meth:`Task.score` — the field's standard metrics over predictions and references
  (:meth:`Task.references` reads them from a data batch; :meth:`Task.evaluate_batch` pairs the
  two and is overridden by tasks whose evaluation is not "predict, then compare").

Tasks hold objective state only (such as a contrastive temperature); prediction modules are
model heads, saved with the model. Adding a task type = one module with a config class and a
``Task`` subclass decorated with :func:`register_task` (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Self, TypeVar

import numpy.typing as npt
import torch
from torch import Tensor, nn

from omnifuse.config.loader import ConfigError
from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import BaseTaskConfig, register_task_config, task_problems, task_type
from omnifuse.errors import InferenceError
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextProcessor, TextTokenizer
from omnifuse.models.builder import Processors
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.types import Batch, Inputs

Prediction = dict[str, Any]
"""One sample's prediction: JSON-ready values, or tensors the caller turns into lists/files."""


@dataclass(frozen=True)
class PredictOptions:
    """How :meth:`Task.predict` runs (verified once, like whisper's ``DecodingOptions``).

    Attributes:
        decoding: how text decoders generate (captions, transcripts, answers).
        top_k: candidates per ``[MASK]`` (mlm).
        generate: keyword overrides of a video generator's sampling settings.
    """

    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    top_k: int = 5
    generate: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InferenceError(f"top_k={self.top_k} must be >= 1")


@dataclass(frozen=True)
class ScoreOptions:
    """How :meth:`Task.score` scores.

    Attributes:
        candidates: retrieval ranks among at most this many pairs.
        caption_tokenizer: ``auto``, ``ptb`` or ``simple`` (caption metrics).
        meteor: also compute METEOR for captions (starts a JVM).
    """

    candidates: int = 500
    caption_tokenizer: str = "auto"
    meteor: bool = False


@dataclass
class Scores:
    """What :meth:`Task.score` returns.

    Attributes:
        samples: samples scored.
        metrics: metric name -> value (None where undefined).
        classes: class names, for classifiers (the confusion matrix's order).
        confusion: ``[C][C]`` counts, rows = reference, columns = prediction.
        note: why nothing (or less) was scored.
    """

    samples: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)
    classes: list[str] | None = None
    confusion: list[list[int]] | None = None
    note: str = ""


class Evaluated(NamedTuple):
    """What :meth:`Task.evaluate_batch` returns.

    Attributes:
        predictions: the scored predictions.
        references: one per prediction.
        rows: per prediction the batch row it is about (for example grids); None when the
            predictions are not one per row (loss records, mined negatives).
    """

    predictions: list[Prediction]
    references: list[Any]
    rows: list[int] | None = None


@dataclass(frozen=True)
class TaskContext:
    """What a task type's :meth:`Task.from_config` gets besides its config.

    Attributes:
        run: the whole run config.
        model: the model the task trains or serves (its heads are looked up by name).
        processors: the model's processors (e.g. the tokenizer captioning targets need).
        class_names: task -> class names of its target (from the dataset card), where known.
    """

    run: RunConfig
    model: MultimodalModel
    processors: Processors
    class_names: Mapping[str, Sequence[str]] = field(default_factory=dict)


class Task(nn.Module, ABC):
    """Base of every task type: a named, weighted objective over some of a batch's modalities.

    Class attributes (set by each type):
        type_name: the config ``type`` it is registered under.
        description: one line for ``omnifuse info`` and the docs.
        config_class: its config schema (a :class:`BaseTaskConfig` subclass).
        serves: the ``Pipeline`` requests it answers (``"classify"``, ``"caption"`` ...).

    Args:
        name: the task's key in the run config's ``tasks:``.
        weight: fixed loss weight (applied by the engine, not here).
        inputs: modalities fed to the model; the batch's others are dropped.
        required: inputs a prediction cannot do without (the others may be missing).
    """

    type_name: ClassVar[str]
    description: ClassVar[str]
    config_class: ClassVar[type[BaseTaskConfig]]
    serves: ClassVar[tuple[str, ...]] = ()
    fixed_classes: ClassVar[tuple[str, ...] | None] = None
    """Class names every instance predicts (a matching head's), whatever the data."""
    predict_inputs: ClassVar[tuple[str, ...] | None] = None
    """Modalities a prediction reads when they differ from the training inputs (video tasks
    train on clips but generate from text); None: :attr:`inputs`."""
    renamed_state: ClassVar[dict[str, str]] = {}
    """Old state-dict key prefix -> new one, so checkpoints written before a rename resume."""

    def __init__(
        self, name: str, weight: float, inputs: Sequence[str], required: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.name = name
        self.weight = weight
        self.inputs = tuple(inputs)
        self.required = tuple(required)
        if self.renamed_state:
            self.register_load_state_dict_pre_hook(self._rename_state)  # type: ignore[no-untyped-call]  # untyped in torch

    @classmethod
    def from_config(cls, name: str, config: Any, context: TaskContext) -> Self:
        """Build the task named ``name`` from its (validated) config (every registered type
        defines it; wrappers built by hand need not)."""
        raise NotImplementedError(f"{cls.__name__} does not define from_config")

    # ------------------------------------------------------------------ training

    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """:meth:`loss` (so the engine calls the module and hooks see the call)."""
        return self.loss(model, batch)

    @abstractmethod
    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Losses and metrics of one batch.

        Returns:
            ``"loss"`` (scalar, unweighted, with a graph); optional component losses whose keys
            end in ``_loss``; every other entry is a detached scalar metric (e.g. ``accuracy``).
        """

    # ------------------------------------------------------------------ prediction

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """One prediction per sample of processed ``inputs``, from one batched forward pass."""
        raise InferenceError(f"task {self.name!r} ({self.type_name}) makes no predictions")

    # ------------------------------------------------------------------ scoring

    def references(self, batch: Batch) -> list[Any]:
        """Per sample of ``batch`` what a prediction is scored against; None = not scored."""
        return [None] * len(batch["ids"])

    def evaluate_batch(
        self, model: MultimodalModel, batch: Batch, options: PredictOptions
    ) -> Evaluated:
        """Predictions and their references for the scored samples of one evaluation batch.

        By default: the samples that have a reference and every input of the batch are predicted.
        """
        inputs = self.available_inputs(batch)
        refs = self.references(batch)
        keep = present_rows(inputs, tuple(inputs)) if inputs else None
        rows = [i for i, ref in enumerate(refs) if ref is not None and (keep is None or keep[i])]
        if not inputs or not rows:
            return Evaluated([], [])
        index = torch.tensor(rows, device=next(iter(next(iter(inputs.values())).values())).device)
        kept = {m: index_inputs(d, index) for m, d in inputs.items()}
        return Evaluated(self.predict(model, kept, options), [refs[i] for i in rows], rows)

    def request_processors(self, processors: Processors) -> Processors:
        """The processors that turn this task's raw request inputs into tensors (default: the
        model's; a task that reads a prompt with its own tokenizer adds it)."""
        return processors

    def describe(self, prediction: Prediction, reference: Any) -> tuple[str, str] | None:
        """``(prediction, reference)`` as texts for a prediction grid; None: nothing to show."""
        return None

    def eval_limit(self, options: ScoreOptions) -> int | None:
        """Stop evaluating after this many scored samples (None: the whole split)."""
        return None

    def revise(
        self, model: MultimodalModel, predictions: Sequence[Prediction], options: ScoreOptions
    ) -> list[Prediction]:
        """The split's predictions revised with the model once all are in, before
        :meth:`score` (default: unchanged). Retrieval re-ranking needs every candidate first."""
        return list(predictions)

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """The type's metrics over all predictions of a split."""
        return Scores(len(predictions), note=f"task type {self.type_name!r} has no scores")

    # ------------------------------------------------------------------ helpers

    def available_inputs(self, batch: Batch) -> Inputs:
        """``batch["inputs"]`` restricted to :attr:`inputs` (possibly empty)."""
        available = batch["inputs"]
        return {m: available[m] for m in sorted(available) if m in self.inputs}

    def select_inputs(self, batch: Batch, required: Sequence[str] = ()) -> Inputs:
        """``batch["inputs"]`` restricted to :attr:`inputs`.

        Raises:
            ValueError: a ``required`` modality is missing, or none of :attr:`inputs` is present.
        """
        selected = self.available_inputs(batch)
        missing = [m for m in required if m not in selected]
        if missing or not selected:
            raise ValueError(
                f"task {self.name!r} needs modalities {list(required or self.inputs)} in the "
                f"batch; it holds {sorted(batch['inputs'])}"
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

    def _rename_state(
        self, module: nn.Module, state: dict[str, Any], prefix: str, *args: Any
    ) -> None:
        for key in list(state):
            for old, new in self.renamed_state.items():
                if key.startswith(prefix + old):
                    state[prefix + new + key[len(prefix + old) :]] = state.pop(key)


class LossScoredTask(Task):
    """A task type evaluated by its own losses (masked modelling): each evaluation batch gives
    one record of its loss outputs on random masks (the evaluator seeds them), and the scores
    are their per-sample means."""

    def evaluate_batch(
        self, model: MultimodalModel, batch: Batch, options: PredictOptions
    ) -> Evaluated:
        return Evaluated(loss_record(self, model, batch), [None])

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        return mean_outputs(predictions)


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
    """``[B]`` bool, True where every one of ``modalities`` is present; None when all rows
    qualify. A modality absent from ``inputs`` is absent in every row."""
    rows = {int(next(iter(d.values())).shape[0]) for d in inputs.values()}
    size = rows.pop() if len(rows) == 1 else 0
    keep: Tensor | None = None
    for modality in modalities:
        if modality in inputs:
            present = inputs[modality].get("present")
            if present is None:
                continue
            has = present.bool().cpu()
        else:
            has = torch.zeros(size, dtype=torch.bool)
        keep = has if keep is None else keep & has
    return keep


def count_rows(inputs: Inputs) -> int:
    """Samples in a processed batch (every modality has the same batch size)."""
    return int(next(iter(next(iter(inputs.values())).values())).shape[0])


def text_tokenizer_of(processors: Processors, task: str) -> TextTokenizer:
    """The text processor's tokenizer, or a ValueError naming the task that needs it."""
    processor = processors.get("text")
    if not isinstance(processor, TextProcessor):
        raise ValueError(
            f"task {task!r} needs the text processor's tokenizer; configure model.encoders.text"
        )
    return processor.tokenizer


def decode_texts(tokenizer: TextTokenizer, tokens: Tensor) -> list[str]:
    """``[B, T]`` generated ids -> texts (cut at the first EOS, special tokens dropped)."""
    out = []
    for row in tokens.tolist():
        ids = row[: row.index(tokenizer.eos_id)] if tokenizer.eos_id in row else row
        out.append(tokenizer.decode(ids).strip())
    return out


def class_prediction(probs: Tensor | npt.NDArray[Any], names: Sequence[str] | None) -> Prediction:
    """``[C]`` probabilities (a tensor, or a numpy array from the ONNX runtime) -> ``index``,
    ``label`` (its name, or the index when names are unknown), ``score`` and every class's
    ``scores``."""
    keys = list(names) if names is not None else [str(i) for i in range(probs.shape[0])]
    best = int(probs.argmax())
    return {
        "label": keys[best] if names is not None else best,
        "index": best,
        "score": float(probs[best]),
        "scores": dict(zip(keys, (float(p) for p in probs), strict=True)),
    }


def mean_outputs(records: Sequence[Prediction]) -> Scores:
    """Scores of tasks evaluated by their own losses: per-sample means of every output
    (``num_*`` counts are totals) over records ``{"outputs": {...}, "samples": n}``."""
    sums: dict[str, float] = {}
    count = sum(int(r["samples"]) for r in records)
    for record in records:
        for key, value in record["outputs"].items():
            weight = 1 if key.startswith("num_") else int(record["samples"])
            sums[key] = sums.get(key, 0.0) + float(value) * weight
    if count == 0:
        return Scores(note="no samples")
    metrics: dict[str, float | None] = {
        k: v if k.startswith("num_") else v / count for k, v in sums.items()
    }
    return Scores(count, metrics)


def loss_record(task: Task, model: MultimodalModel, batch: Batch) -> list[Prediction]:
    """One evaluation record of a batch's loss outputs (see :func:`mean_outputs`)."""
    outputs = {key: float(value) for key, value in task.loss(model, batch).items()}
    return [{"outputs": outputs, "samples": len(batch["ids"])}]


# --------------------------------------------------------------------------- registry

T = TypeVar("T", bound=type[Task])

_TASKS: dict[str, type[Task]] = {}
_TASK_MODULES = (
    "omnifuse.tasks.classification",
    "omnifuse.tasks.contrastive",
    "omnifuse.tasks.matching",
    "omnifuse.tasks.mlm",
    "omnifuse.tasks.masked_modeling",
    "omnifuse.tasks.grounding",
    "omnifuse.tasks.captioning",
    "omnifuse.tasks.video_generation",
    "omnifuse.tasks.instruction",
)


def register_task(cls: T) -> T:
    """Class decorator: register a :class:`Task` subclass (and its config) as ``type_name``."""
    if cls.from_config.__func__ is Task.from_config.__func__:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} must define from_config to be registered")
    config: type[BaseTaskConfig] = cls.config_class
    if config.model_fields["type"].default != cls.type_name:
        raise ValueError(f"{cls.__name__}.config_class's `type` must default to {cls.type_name!r}")
    register_task_config(config)
    _TASKS[cls.type_name] = cls
    return cls


def _ensure_registered() -> None:
    for module in _TASK_MODULES:
        importlib.import_module(module)


def list_tasks() -> dict[str, str]:
    """Task type -> description."""
    _ensure_registered()
    return {k: _TASKS[k].description for k in sorted(_TASKS)}


def task_class(type: str) -> type[Task]:
    """The task type registered as ``type``.

    Raises:
        KeyError: an unknown type (the message lists the valid choices).
    """
    _ensure_registered()
    if type not in _TASKS:
        raise KeyError(f"unknown task type {type!r}; valid choices: {', '.join(sorted(_TASKS))}")
    return _TASKS[type]


def task_builder(type: str) -> Callable[[str, Any, TaskContext], Task]:
    """``(name, config, context) -> Task`` of task ``type`` (its ``from_config``)."""
    return task_class(type).from_config


def build_task(name: str, context: TaskContext) -> Task:
    """The :class:`Task` of ``context.run.tasks[name]``."""
    config = context.run.tasks[name]
    return task_class(task_type(config)).from_config(name, config, context)


def build_tasks(
    run: RunConfig,
    model: MultimodalModel,
    processors: Processors,
    class_names: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Task]:
    """One :class:`Task` per entry of ``run.tasks``, in config order.

    Tasks are checked against ``model.config`` (the model actually built, which may come from a
    checkpoint rather than ``run.model``).

    Raises:
        ConfigError: a task names a missing head, a head of the wrong type or an unknown modality.
    """
    problems = [p for n, t in run.tasks.items() for p in task_problems(n, t, model.config)]
    if problems:
        raise ConfigError(problems)
    context = TaskContext(run, model, processors, class_names or {})
    return {name: build_task(name, context) for name in run.tasks}
