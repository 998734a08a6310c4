"""``contrastive``: CLIP-style InfoNCE between two modalities encoded separately."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Self

import torch
from torch import Tensor

from omnifuse.config.tasks import ContrastiveTaskConfig
from omnifuse.errors import InferenceError
from omnifuse.metrics import (
    ImageTextRetrievalResult,
    image_text_retrieval,
    rerank_top_k,
    retrieval_metrics,
)
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
    index_encoded,
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


@dataclass(frozen=True)
class Rerank:
    """Retrieval re-ranking by a matching head (``ContrastiveTaskConfig.rerank_head``).

    Attributes:
        head: 2-class classification head on the fused pair (class 1 = matched).
        top_k: candidates per query it re-scores.
        chunk: pairs fused per forward pass.
    """

    head: str
    top_k: int
    chunk: int = 256


def stack_encoded(rows: Sequence[EncoderOutput]) -> EncoderOutput:
    """Single-sample encoder outputs (``tokens [N_i, D]``, ``mask [N_i]``, ``pooled [D]``) ->
    one batch padded to the longest ``N_i`` (padding masked out)."""
    length = max(int(r.tokens.shape[0]) for r in rows)
    tokens = rows[0].tokens.new_zeros(len(rows), length, rows[0].tokens.shape[-1])
    mask = rows[0].mask.new_zeros(len(rows), length)
    for i, row in enumerate(rows):
        tokens[i, : row.tokens.shape[0]] = row.tokens
        mask[i, : row.mask.shape[0]] = row.mask
    return EncoderOutput(tokens, mask, torch.stack([r.pooled for r in rows]))


def _row(encoded: EncoderOutput, i: int) -> EncoderOutput:
    """Row ``i`` of a batch's encoder output, on the CPU (kept for re-ranking)."""
    return EncoderOutput(encoded.tokens[i].cpu(), encoded.mask[i].cpu(), encoded.pooled[i].cpu())


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
        rerank: re-rank the retrieval evaluation's top candidates with a matching head.
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
        rerank: Rerank | None = None,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.a, self.b, self.head_a, self.head_b = a, b, head_a, head_b
        self.objective = objective
        self.rerank = rerank

    @classmethod
    def from_config(cls, name: str, config: ContrastiveTaskConfig, context: TaskContext) -> Self:
        objective = ContrastiveLoss(
            config.temperature, config.learnable_temperature, config.max_logit_scale
        )
        inputs = config.resolved_inputs(context.model.config)
        head = config.rerank_head
        rerank = None if head is None else Rerank(head, config.rerank_top_k)
        return cls(
            name,
            config.weight,
            inputs,
            config.a,
            config.b,
            config.head_a,
            config.head_b,
            objective,
            rerank,
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
        """Embeddings of the samples that have both ``a`` and ``b`` (retrieval needs pairs);
        with re-ranking also each sample's encoder outputs (``encoded``, on the CPU)."""
        if self.a not in batch["inputs"] or self.b not in batch["inputs"]:
            return Evaluated([], [])
        if self.rerank is None:
            return super().evaluate_batch(model, batch, options)
        inputs = paired_inputs(self, batch, self.a, self.b)
        pair = embed_pair(model, inputs, self.a, self.b, self.head_a, self.head_b)
        embed_a, embed_b = pair.embed_a.float().cpu(), pair.embed_b.float().cpu()
        predictions: list[Prediction] = [
            {
                "embeddings": {self.a: embed_a[i], self.b: embed_b[i]},
                "similarity": float((embed_a[i] * embed_b[i]).sum()),
                "encoded": {self.a: _row(pair.encoded_a, i), self.b: _row(pair.encoded_b, i)},
            }
            for i in range(embed_a.shape[0])
        ]
        return Evaluated(predictions, [True] * len(predictions))

    def eval_limit(self, options: ScoreOptions) -> int | None:
        return options.candidates

    def revise(
        self, model: MultimodalModel, predictions: Sequence[Prediction], options: ScoreOptions
    ) -> list[Prediction]:
        """With re-ranking: each of the first ``options.candidates`` predictions gets its rows
        of re-ranked scores (``reranked``: ``"a_to_b"``/``"b_to_a"`` -> ``[N]``), the top
        ``top_k`` candidates of every query re-scored by the matching head on the fused pair;
        the stored encoder outputs are dropped."""
        count = min(len(predictions), options.candidates)
        if self.rerank is None or count < 2:
            return list(predictions)
        kept = predictions[:count]
        emb_a, emb_b = self._embeddings(kept)
        similarity = emb_a @ emb_b.T  # (N_a, N_b)
        device = next(model.parameters()).device
        encoded = {m: stack_encoded([p["encoded"][m] for p in kept]) for m in (self.a, self.b)}
        encoded = {
            m: EncoderOutput(e.tokens.to(device), e.mask.to(device), e.pooled.to(device))
            for m, e in encoded.items()
        }

        def pair_scores(rows_a: Tensor, rows_b: Tensor) -> Tensor:
            return self._matched_logits(model, encoded, rows_a.to(device), rows_b.to(device))

        top_k = self.rerank.top_k
        a_b = rerank_top_k(similarity, top_k, pair_scores)
        b_a = rerank_top_k(similarity.T, top_k, lambda texts, images: pair_scores(images, texts))
        revised = [
            {k: v for k, v in p.items() if k != "encoded"}
            | {"reranked": {"a_to_b": ab, "b_to_a": ba}}
            for p, ab, ba in zip(kept, a_b, b_a, strict=True)
        ]
        return revised + [
            {k: v for k, v in p.items() if k != "encoded"} for p in predictions[count:]
        ]

    def _embeddings(self, predictions: Sequence[Prediction]) -> tuple[Tensor, Tensor]:
        """``[N, E]`` embeddings of ``a`` and of ``b``."""
        emb_a = torch.stack([p["embeddings"][self.a] for p in predictions])
        emb_b = torch.stack([p["embeddings"][self.b] for p in predictions])
        return emb_a, emb_b

    def _matched_logits(
        self,
        model: MultimodalModel,
        encoded: dict[str, EncoderOutput],
        rows_a: Tensor,
        rows_b: Tensor,
    ) -> Tensor:
        """``[P]`` matched-minus-unmatched logits of the pairs ``(a[rows_a], b[rows_b])``."""
        assert self.rerank is not None
        out = []
        for start in range(0, rows_a.shape[0], self.rerank.chunk):
            stop = start + self.rerank.chunk
            fused = model.fusion(
                {
                    self.a: index_encoded(encoded[self.a], rows_a[start:stop]),
                    self.b: index_encoded(encoded[self.b], rows_b[start:stop]),
                }
            )
            logits = model.heads[self.rerank.head](fused).float()
            out.append((logits[:, 1] - logits[:, 0]).cpu())
        return torch.cat(out)

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """Retrieval recall@1/5/10, median rank and MRR in both directions among the first
        ``options.candidates`` pairs."""
        count = min(len(predictions), options.candidates)
        if count < 2:
            return Scores(count, note="retrieval needs at least 2 pairs")
        kept = predictions[:count]
        emb_a, emb_b = self._embeddings(kept)  # (N, E) each
        positives = [[i] for i in range(count)]
        first_stage = image_text_retrieval(emb_a @ emb_b.T, positives)
        a_b, b_a = f"{self.a}_to_{self.b}/", f"{self.b}_to_{self.a}/"
        result = first_stage
        if "reranked" in kept[0]:
            result = ImageTextRetrievalResult(
                retrieval_metrics(torch.stack([p["reranked"]["a_to_b"] for p in kept]), positives),
                retrieval_metrics(torch.stack([p["reranked"]["b_to_a"] for p in kept]), positives),
            )
        metrics = {
            key.replace("i2t/", a_b).replace("t2i/", b_a): value
            for key, value in result.scalars().items()
        }
        if result is not first_stage:  # what re-ranking added: the embeddings' own R@1
            metrics[f"{a_b}recall@1_before_rerank"] = first_stage.image_to_text.recall[1]
            metrics[f"{b_a}recall@1_before_rerank"] = first_stage.text_to_image.recall[1]
        return Scores(count, metrics)
