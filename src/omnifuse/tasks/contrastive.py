"""``contrastive``: CLIP-style InfoNCE between two modalities encoded separately."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, Self

import torch
from torch import Tensor

from omnifuse.config.tasks import ContrastiveTaskConfig
from omnifuse.errors import InferenceError
from omnifuse.metrics import image_text_retrieval
from omnifuse.modalities.base import EncoderOutput
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import ContrastiveLoss
from omnifuse.objectives.distributed import Group, batch_offset, gather_sizes, is_distributed
from omnifuse.tasks.base import (
    Evaluated,
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    index_inputs,
    present_rows,
    register_task,
)
from omnifuse.types import Batch, Inputs


class PairEmbeddings(NamedTuple):
    """Two modalities of the same samples, each encoded on its own.

    Attributes:
        encoded_a: encoder output of modality ``a`` (``tokens [B, N_a, D_a]`` ...).
        encoded_b: encoder output of modality ``b``.
        embed_a: ``[B, E]`` projection-head embedding of ``a``.
        embed_b: ``[B, E]`` projection-head embedding of ``b``.
    """

    encoded_a: EncoderOutput
    encoded_b: EncoderOutput
    embed_a: Tensor
    embed_b: Tensor


def paired_inputs(task: Task, batch: Batch, a: str, b: str) -> Inputs:
    """The ``a`` and ``b`` inputs of the samples that have both (others are dropped)."""
    inputs = task.select_inputs(batch, (a, b))
    pair = {a: inputs[a], b: inputs[b]}
    keep = present_rows(pair, (a, b))
    if keep is None:
        return pair
    return {m: index_inputs(t, keep) for m, t in pair.items()}


def embed_pair(
    model: MultimodalModel, inputs: Inputs, a: str, b: str, head_a: str, head_b: str
) -> PairEmbeddings:
    """Encode ``a`` and ``b`` separately (no fusion, so neither sees the other) and project."""
    encoded = model.encode({a: inputs[a], b: inputs[b]})
    embed_a: Tensor = model.heads[head_a](encoded[a])
    embed_b: Tensor = model.heads[head_b](encoded[b])
    return PairEmbeddings(encoded[a], encoded[b], embed_a, embed_b)


def local_offset(rows: int, device: torch.device, group: Group | None = None) -> int:
    """Column of this rank's first row among the gathered rows (0 outside distributed runs)."""
    if not is_distributed(group):
        return 0
    return batch_offset(gather_sizes(rows, device, group), group)


def _row_hits(logits: Tensor, offset: int) -> Tensor:
    """Share of rows whose top column is their own pair (column ``offset + row``)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return (logits.argmax(dim=1) == rows + offset).float().mean()


@register_task
class ContrastiveTask(Task):
    """Symmetric InfoNCE between modalities ``a`` and ``b`` with a learnable temperature.

    Each modality is encoded on its own and projected by its projection head; negatives are
    gathered from every rank when training is distributed. Samples lacking either modality are
    dropped.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (must hold ``a`` and ``b``).
        a: first modality, e.g. ``"image"``.
        b: second modality, e.g. ``"text"``.
        head_a: projection head reading ``a``.
        head_b: projection head reading ``b``.
        objective: the loss (holds the temperature, the task's only parameter).
    """

    type_name = "contrastive"
    description = "CLIP InfoNCE between two separately encoded modalities."
    config_class = ContrastiveTaskConfig
    serves = ("embed",)
    # The objective was ``self.loss`` before the task type's ``loss`` method existed.
    renamed_state: ClassVar[dict[str, str]] = {"loss.": "objective."}

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        a: str,
        b: str,
        head_a: str,
        head_b: str,
        objective: ContrastiveLoss,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.a, self.b, self.head_a, self.head_b = a, b, head_a, head_b
        self.objective = objective

    @classmethod
    def from_config(cls, name: str, config: ContrastiveTaskConfig, context: TaskContext) -> Self:
        objective = ContrastiveLoss(
            config.temperature, config.learnable_temperature, config.max_logit_scale
        )
        inputs = config.resolved_inputs(context.model.config)
        return cls(
            name, config.weight, inputs, config.a, config.b, config.head_a, config.head_b, objective
        )

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss``, ``{a}_to_{b}_accuracy``, ``{b}_to_{a}_accuracy``, ``logit_scale``."""
        # Keep the stored scale at the cap, where (unlike above it) gradients still flow.
        self.objective.logit_scale.constrain_()
        inputs = paired_inputs(self, batch, self.a, self.b)
        pair = embed_pair(model, inputs, self.a, self.b, self.head_a, self.head_b)
        out = self.objective(pair.embed_a, pair.embed_b)
        with torch.no_grad():
            offset = local_offset(pair.embed_a.shape[0], pair.embed_a.device, self.objective.group)
            metrics = {
                f"{self.a}_to_{self.b}_accuracy": _row_hits(out.logits_ab, offset),
                f"{self.b}_to_{self.a}_accuracy": _row_hits(out.logits_ba, offset),
            }
        return {"loss": out.loss, **metrics, "logit_scale": out.logit_scale.detach()}

    @property
    def heads(self) -> dict[str, str]:
        """Modality -> the projection head that embeds it."""
        return {self.a: self.head_a, self.b: self.head_b}

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per sample its ``embeddings`` (modality -> ``[E]``) of the given modalities (``a``,
        ``b`` or both, each encoded on its own) and, with both, their cosine ``similarity``."""
        given = [m for m in (self.a, self.b) if m in inputs]
        if not given or set(inputs) - set(given):
            got = ", ".join(sorted(inputs)) or "nothing"
            raise InferenceError(f"task {self.name!r} embeds {self.a} and/or {self.b}; got {got}")
        encoded = model.encode({m: inputs[m] for m in given})
        embeddings = {m: model.heads[self.heads[m]](encoded[m]).float().cpu() for m in given}
        both = len(embeddings) == 2
        similarity = (embeddings[self.a] * embeddings[self.b]).sum(dim=-1) if both else None
        rows = int(next(iter(embeddings.values())).shape[0])
        return [
            {"embeddings": {m: e[i] for m, e in embeddings.items()}}
            | ({} if similarity is None else {"similarity": float(similarity[i])})
            for i in range(rows)
        ]

    def references(self, batch: Batch) -> list[Any]:
        """Every sample is its own pair's reference (row i of ``a`` matches row i of ``b``)."""
        return [True] * len(batch["ids"])

    def evaluate_batch(
        self, model: MultimodalModel, batch: Batch, options: PredictOptions
    ) -> Evaluated:
        """Embeddings of the samples that have both ``a`` and ``b`` (retrieval needs pairs)."""
        if self.a not in batch["inputs"] or self.b not in batch["inputs"]:
            return Evaluated([], [])
        return super().evaluate_batch(model, batch, options)

    def eval_limit(self, options: ScoreOptions) -> int | None:
        return options.candidates

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """Retrieval recall@1/5/10, median rank and MRR in both directions among the first
        ``options.candidates`` pairs."""
        count = min(len(predictions), options.candidates)
        if count < 2:
            return Scores(count, note="retrieval needs at least 2 pairs")
        kept = predictions[:count]
        emb_a = torch.stack([p["embeddings"][self.a] for p in kept])  # (N, E)
        emb_b = torch.stack([p["embeddings"][self.b] for p in kept])
        result = image_text_retrieval(emb_a @ emb_b.T, [[i] for i in range(count)])
        a_b, b_a = f"{self.a}_to_{self.b}/", f"{self.b}_to_{self.a}/"
        metrics = {
            key.replace("i2t/", a_b).replace("t2i/", b_a): value
            for key, value in result.scalars().items()
        }
        return Scores(count, metrics)
