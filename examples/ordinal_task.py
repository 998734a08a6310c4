"""A new task type in one module: ordinal regression over ordered classes.

Ratings, counts and age bins are classes with an order: predicting 4 for a true 5 is better than
predicting 1. This task type trains an ordinary ``classification`` head with cross-entropy plus
the absolute error of the *expected* class index, predicts that expected value, and is scored by
its mean absolute error. It is the worked example of ``docs/architecture.md``: a config class, a
:class:`~omnifuse.tasks.Task` subclass and one ``@register_task`` — nothing else in omnifuse
changes. Import this module before loading a config that uses ``type: ordinal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from omnifuse.config.tasks import BaseTaskConfig
from omnifuse.models import MultimodalModel
from omnifuse.tasks import PredictOptions, ScoreOptions, Scores, Task, TaskContext, register_task
from omnifuse.types import IGNORE_INDEX, Batch, Inputs


class OrdinalTaskConfig(BaseTaskConfig):
    """Ordinal regression: a classification head whose classes are ordered."""

    head_types: ClassVar[dict[str, str]] = {"head": "classification"}  # checked for you

    type: Literal["ordinal"] = "ordinal"
    head: str = Field(description="A `classification` head; its classes in ascending order.")
    target: str = Field(default="label", description="Target field holding the class index.")
    distance_weight: float = Field(default=1.0, ge=0.0, description="Weight of |E[k] - k|.")


@register_task
class OrdinalTask(Task):
    """Cross-entropy + ``distance_weight`` x |expected class index - true index|."""

    type_name = "ordinal"
    description = "Ordinal regression over ordered classes (expected-index error)."
    config_class = OrdinalTaskConfig
    serves = ("classify",)

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: Sequence[str],
        head: str,
        target: str,
        distance_weight: float,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.head, self.target_field, self.distance_weight = head, target, distance_weight

    @classmethod
    def from_config(cls, name: str, config: OrdinalTaskConfig, context: TaskContext) -> Self:
        inputs = config.resolved_inputs(context.model.config)
        args = (config.head, config.target, config.distance_weight)
        return cls(name, config.weight, inputs, *args)

    def expected_index(self, logits: Tensor) -> Tensor:
        """``[B, C]`` logits -> ``[B]`` expected class index under the softmax."""
        ranks = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
        return (logits.float().softmax(dim=-1) * ranks).sum(dim=-1)

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        logits = model.run_head(self.head, self.select_inputs(batch))  # (B, C)
        labels = self.target(batch, self.target_field).to(logits.device)
        kept = labels != IGNORE_INDEX
        if not bool(kept.any()):  # keep the graph: every rank must run backward
            return {"loss": logits.sum() * 0.0, "mae": logits.new_zeros(())}
        error = (self.expected_index(logits[kept]) - labels[kept].float()).abs().mean()
        loss = F.cross_entropy(logits[kept], labels[kept]) + self.distance_weight * error
        return {"loss": loss, "mae": error.detach()}

    def predict(self, model: MultimodalModel, inputs: Inputs, options: PredictOptions) -> list[Any]:
        """Per sample the expected class index ``value`` and the nearest class ``index``."""
        values = self.expected_index(model.run_head(self.head, inputs)).cpu()
        return [{"value": float(v), "index": round(float(v))} for v in values]

    def references(self, batch: Batch) -> list[Any]:
        labels = self.target(batch, self.target_field).tolist()
        return [None if label == IGNORE_INDEX else int(label) for label in labels]

    def score(
        self, predictions: Sequence[Any], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        if not predictions:
            return Scores(note=f"no labelled samples (target {self.target_field!r})")
        errors = [abs(p["value"] - r) for p, r in zip(predictions, references, strict=True)]
        exact = [p["index"] == r for p, r in zip(predictions, references, strict=True)]
        metrics = {"mae": sum(errors) / len(errors), "accuracy": sum(exact) / len(exact)}
        return Scores(len(predictions), metrics)
