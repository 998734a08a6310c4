"""``matching``: matched/unmatched (ITM) over the fused pair, with mined hard negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.tasks import MatchingTaskConfig
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import MatchingLoss, MatchingPairs
from omnifuse.tasks.base import Task, TaskContext, index_encoded, register_task
from omnifuse.tasks.contrastive import embed_pair, paired_inputs
from omnifuse.types import Batch


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
        super().__init__(name, weight, inputs)
        self.a, self.b, self.head, self.head_a, self.head_b = a, b, head, head_a, head_b
        self.temperature = temperature
        self.loss = MatchingLoss()

    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
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
        out = self.loss(logits, pairs.labels)
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
            return self.loss.sample_pairs(similarity)


@register_task("matching", "Matched/unmatched head on fused pairs with mined hard negatives.")
def build_matching_task(
    name: str, config: MatchingTaskConfig, context: TaskContext
) -> MatchingTask:
    """Registry builder for :class:`MatchingTask`."""
    return MatchingTask(
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
