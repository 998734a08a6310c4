"""``classification``: cross-entropy of a classification head against a class target.

Serves ``classify`` (and ``answer`` when the answers are its classes, VQA as classification);
scores accuracy, macro-F1 and the confusion matrix, per question type for VQA.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.tasks import ClassificationTaskConfig
from omnifuse.metrics import classification_metrics
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks.base import (
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    class_prediction,
    register_task,
)
from omnifuse.types import IGNORE_INDEX, Batch, Inputs

QUESTION_TYPE = "question_type"
"""Target field that groups VQA questions (ShapesWorld: count, colour, shape ...)."""


@register_task
class ClassificationTask(Task):
    """Classify samples with a model head; samples whose label is ``-100`` are not scored.

    Used for text classification, visual recognition, audio-visual labels, VQA over a closed
    answer vocabulary and the like. The head reads the fusion of :attr:`inputs` (any non-empty
    subset of them at prediction time) or one modality's encoder output.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model.
        head: name of a ``classification`` head of the model.
        target: target field holding class indices (``[B]`` long).
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
        num_classes: the head's classes.
        class_names: one name per class (None: unknown; predictions then give indices).
        by_question_type: also score accuracy per question type (VQA).
        required: inputs a prediction needs (the head's modality when it reads one).
    """

    type_name = "classification"
    description = "Cross-entropy + accuracy of a classification head."
    config_class = ClassificationTaskConfig
    serves = ("classify", "answer")

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        target: str = "label",
        label_smoothing: float = 0.0,
        num_classes: int = 0,
        class_names: Sequence[str] | None = None,
        by_question_type: bool = False,
        required: Sequence[str] = (),
    ) -> None:
        super().__init__(name, weight, inputs, required)
        self.head, self.target_field, self.label_smoothing = head, target, label_smoothing
        self.num_classes = num_classes
        self.class_names = None if class_names is None else tuple(class_names)
        self.by_question_type = by_question_type

    @classmethod
    def from_config(cls, name: str, config: ClassificationTaskConfig, context: TaskContext) -> Self:
        model = context.model
        source = model.head_sources[config.head]
        data = config.data or context.run.data
        return cls(
            name,
            config.weight,
            config.resolved_inputs(model.config),
            config.head,
            config.target,
            config.label_smoothing,
            num_classes=int(getattr(model.config.heads[config.head], "num_classes", 0)),
            class_names=context.class_names.get(name),
            by_question_type=config.target == "answer" or data.text_field == "question",
            required=() if model.reads_fusion(config.head) else (source,),
        )

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (mean cross-entropy over labelled samples) and ``accuracy``."""
        logits = model.run_head(self.head, self.select_inputs(batch, self.required))  # (B, C)
        labels = self._labels(batch, logits)
        labelled = labels != IGNORE_INDEX
        count = labelled.sum().clamp(min=1).to(logits.dtype)
        # Sum / count rather than the mean: a batch without labels gives 0, not NaN.
        loss = F.cross_entropy(
            logits,
            labels,
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            label_smoothing=self.label_smoothing,
        )
        with torch.no_grad():
            hits = (logits.argmax(dim=-1) == labels) & labelled
            accuracy = hits.sum() / count
        return {"loss": loss / count, "accuracy": accuracy}

    def probabilities(self, model: MultimodalModel, inputs: Inputs) -> Tensor:
        """``[B, C]`` class probabilities (one forward pass)."""
        return model.run_head(self.head, inputs).float().softmax(dim=-1)

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per sample ``label`` (class name, or index when names are unknown), ``index``,
        ``score`` and every class's ``scores``."""
        probs = self.probabilities(model, inputs).cpu()
        return [class_prediction(row, self.class_names) for row in probs]

    def references(self, batch: Batch) -> list[Any]:
        """``{"index", "question_type"}`` per labelled sample (None where unlabelled)."""
        labels = self.target(batch, self.target_field)
        kinds = batch["targets"].get(QUESTION_TYPE)
        kinds = list(kinds) if kinds is not None else [None] * len(labels)
        return [
            None if int(label) == IGNORE_INDEX else {"index": int(label), "question_type": kind}
            for label, kind in zip(labels.tolist(), kinds, strict=True)
        ]

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """Accuracy, macro-F1 and confusion matrix; per question type for VQA."""
        if not references:
            return Scores(note=f"no labelled samples (target {self.target_field!r})")
        preds = [int(p["index"]) for p in predictions]
        refs = [int(r["index"]) for r in references]
        result = classification_metrics(preds, refs, self.num_classes, self.class_names)
        metrics: dict[str, float | None] = {
            "accuracy": result.accuracy,
            "macro_f1": result.macro_f1,
        }
        types = [r["question_type"] for r in references]
        if self.by_question_type and any(t is not None for t in types):
            hits = [float(p == r) for p, r in zip(preds, refs, strict=True)]
            metrics |= accuracy_by_type(hits, types)
        names = self.class_names or tuple(str(i) for i in range(self.num_classes))
        return Scores(len(refs), metrics, list(names), result.confusion_matrix.tolist())

    def describe(self, prediction: Prediction, reference: Any) -> tuple[str, str] | None:
        """The predicted and the true class names (indices when names are unknown)."""
        names = self.class_names
        index = int(reference["index"])
        return str(prediction["label"]), names[index] if names is not None else str(index)

    def _labels(self, batch: Batch, logits: Tensor) -> Tensor:
        """``[B]`` long labels on the logits' device, checked against the head's classes."""
        labels = self.target(batch, self.target_field)
        if not isinstance(labels, Tensor) or labels.shape != logits.shape[:1]:
            raise ValueError(
                f"task {self.name!r}: target {self.target_field!r} must be a [B] class-index "
                f"tensor for {logits.shape[0]} samples; got {type(labels).__name__}"
            )
        labels = labels.to(logits.device, torch.long)
        num_classes = logits.shape[-1]
        bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_classes))
        if bool(bad.any()):
            raise ValueError(
                f"task {self.name!r}: target {self.target_field!r} holds class "
                f"{int(labels[bad][0])}, but head {self.head!r} has {num_classes} classes"
            )
        return labels


def accuracy_by_type(hits: Sequence[float], types: Sequence[str | None]) -> dict[str, float | None]:
    """``accuracy/<type>`` -> mean of ``hits`` per question type."""
    groups: dict[str, list[float]] = defaultdict(list)
    for hit, kind in zip(hits, types, strict=True):
        groups[kind or "unknown"].append(hit)
    return {f"accuracy/{k}": sum(v) / len(v) for k, v in sorted(groups.items())}
