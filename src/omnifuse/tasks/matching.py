"""``matching``: matched/unmatched (ITM) over the fused pair, with mined hard negatives.

Serves ``classify`` (classes ``unmatched``, ``matched``); scores accuracy on true pairs and on
in-batch negatives (each ``a`` with the ``b`` of the next sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.tasks import MatchingTaskConfig
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import MatchingLoss, MatchingPairs
from omnifuse.tasks.base import (
    Evaluated,
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    class_prediction,
    index_encoded,
    register_task,
)
from omnifuse.tasks.contrastive import embed_pair, paired_inputs
from omnifuse.types import Batch, Inputs

MATCHING_CLASSES = ("unmatched", "matched")
"""Class names of a matching head (class 1 = matched)."""


@register_task
class MatchingTask(Task):
    """Is ``(a_i, b_j)`` a true pair? A 2-class head on the fusion of the pair decides.

    Per batch of ``B`` samples (ALBEF/BLIP): the ``B`` true pairs, plus for every ``a_i`` one
    ``b_j`` and for every ``b_i`` one ``a_j`` drawn with probability ``softmax(sim / T)`` over
    the non-matching rows, where ``sim`` is the cosine similarity of the contrastive projection
    heads (computed without gradient). Each modality is encoded once; the pairs index the
    encoder outputs before fusion.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (must hold ``a`` and ``b``).
        a: first modality.
        b: second modality.
        head: 2-class classification head on ``fused`` (class 1 = matched).
        head_a: projection head reading ``a`` (for mining).
        head_b: projection head reading ``b`` (for mining).
        temperature: sharpness of the negative sampling.
    """

    type_name = "matching"
    description = "Matched/unmatched head on fused pairs with mined hard negatives."
    config_class = MatchingTaskConfig
    serves = ("classify",)
    fixed_classes = MATCHING_CLASSES

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        a: str,
        b: str,
        head: str,
        head_a: str,
        head_b: str,
        temperature: float = 0.07,
    ) -> None:
        super().__init__(name, weight, inputs, required=(a, b))
        self.a, self.b, self.head, self.head_a, self.head_b = a, b, head, head_a, head_b
        self.temperature = temperature
        self.objective = MatchingLoss()

    @classmethod
    def from_config(cls, name: str, config: MatchingTaskConfig, context: TaskContext) -> Self:
        return cls(
            name,
            config.weight,
            config.resolved_inputs(context.model.config),
            config.a,
            config.b,
            config.head,
            config.head_a,
            config.head_b,
            config.temperature,
        )

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (cross-entropy over the ``3B`` pairs) and ``accuracy``."""
        inputs = paired_inputs(self, batch, self.a, self.b)
        pair = embed_pair(model, inputs, self.a, self.b, self.head_a, self.head_b)
        pairs = self.sample_pairs(pair.embed_a, pair.embed_b)
        fused = model.fusion(
            {
                self.a: index_encoded(pair.encoded_a, pairs.index_a),
                self.b: index_encoded(pair.encoded_b, pairs.index_b),
            }
        )
        logits: Tensor = model.heads[self.head](fused)  # (3B, 2)
        out = self.objective(logits, pairs.labels)
        if pair.embed_a.shape[0] < 2:
            # One sample has no negative: keep the graph (every rank must backward) but learn
            # nothing rather than "everything matches".
            return {"loss": out.loss * 0.0, "accuracy": out.accuracy}
        return {"loss": out.loss, "accuracy": out.accuracy}

    def sample_pairs(self, embed_a: Tensor, embed_b: Tensor) -> MatchingPairs:
        """``[B, E]`` embeddings -> ``[3B]`` pair indices and labels (true pairs first).

        With ``B < 2`` there is nothing to mine: only the true pairs are returned.
        """
        with torch.no_grad():
            a, b = F.normalize(embed_a.float(), dim=-1), F.normalize(embed_b.float(), dim=-1)
            similarity = a @ b.T / self.temperature  # (B, B), true pairs on the diagonal
            if similarity.shape[0] < 2:
                rows = torch.arange(similarity.shape[0], device=similarity.device)
                return MatchingPairs(rows, rows, torch.ones_like(rows))
            return self.objective.sample_pairs(similarity)

    def probabilities(self, model: MultimodalModel, inputs: Inputs, shift: int = 0) -> Tensor:
        """``[B, 2]`` (unmatched, matched) probabilities of each ``a_i`` with ``b_{i - shift}``."""
        encoded = model.encode({self.a: inputs[self.a], self.b: inputs[self.b]})
        enc_b = encoded[self.b]
        if shift:
            rows = torch.arange(enc_b.tokens.shape[0], device=enc_b.tokens.device)
            enc_b = index_encoded(enc_b, rows.roll(shift))
        logits: Tensor = model.heads[self.head](
            model.fusion({self.a: encoded[self.a], self.b: enc_b})
        )
        return logits.float().softmax(dim=-1)

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per pair ``label`` (``matched``/``unmatched``), ``index``, ``score``, ``scores``."""
        return [
            class_prediction(row, MATCHING_CLASSES)
            for row in self.probabilities(model, inputs).cpu()
        ]

    def references(self, batch: Batch) -> list[Any]:
        return [1] * len(batch["ids"])

    def evaluate_batch(
        self, model: MultimodalModel, batch: Batch, options: PredictOptions
    ) -> Evaluated:
        """The true pairs (reference 1) and, with two or more, each ``a`` with the next
        sample's ``b`` (reference 0)."""
        if self.a not in batch["inputs"] or self.b not in batch["inputs"]:
            return Evaluated([], [])
        inputs = paired_inputs(self, batch, self.a, self.b)
        count = int(next(iter(inputs[self.a].values())).shape[0])
        if count == 0:
            return Evaluated([], [])
        preds = self.predict(model, inputs, options)
        refs = [1] * count
        if count > 1:
            negatives = self.probabilities(model, inputs, shift=1).cpu()
            preds += [class_prediction(row, MATCHING_CLASSES) for row in negatives]
            refs += [0] * count
        return Evaluated(preds, refs)

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """``accuracy`` over every pair, ``matched_accuracy`` and ``unmatched_accuracy``."""
        if not predictions:
            return Scores(note=f"no samples with both {self.a} and {self.b}")
        hits: dict[int, list[float]] = {1: [], 0: []}
        for pred, ref in zip(predictions, references, strict=True):
            hits[int(ref)].append(float(int(pred["index"]) == int(ref)))
        every = hits[1] + hits[0]
        metrics: dict[str, float | None] = {"accuracy": sum(every) / len(every)}
        for kind, values in (("matched", hits[1]), ("unmatched", hits[0])):
            metrics[f"{kind}_accuracy"] = sum(values) / len(values) if values else None
        return Scores(len(hits[1]), metrics)
