"""``classification``: cross-entropy of a classification head against a class target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.tasks import ClassificationTaskConfig
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks.base import Task, TaskContext, register_task, run_head
from omnifuse.types import IGNORE_INDEX, Batch


class ClassificationTask(Task):
    """Classify samples with a model head; samples whose label is ``-100`` are not scored.

    Used for text classification, visual recognition, audio-visual labels and the like. The
    head reads the fusion of :attr:`inputs` or one modality's encoder output.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model.
        head: name of a ``classification`` head of the model.
        target: target field holding class indices (``[B]`` long).
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
    """

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        target: str = "label",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.head, self.target_field, self.label_smoothing = head, target, label_smoothing

    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (mean cross-entropy over labelled samples) and ``accuracy``."""
        source = model.head_sources[self.head]
        required = () if source == "fused" else (source,)
        logits = run_head(model, self.head, self.select_inputs(batch, required))  # (B, C)
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


@register_task("classification", "Cross-entropy + accuracy of a classification head.")
def build_classification_task(
    name: str, config: ClassificationTaskConfig, context: TaskContext
) -> ClassificationTask:
    """Registry builder for :class:`ClassificationTask`."""
    return ClassificationTask(
        name,
        config.weight,
        config.resolved_inputs(context.model.config),
        config.head,
        config.target,
        config.label_smoothing,
    )
