"""``contrastive``: CLIP-style InfoNCE between two modalities encoded separately."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from omnifuse.config.tasks import ContrastiveTaskConfig
from omnifuse.data.collate import Batch
from omnifuse.modalities.base import EncoderOutput
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import ContrastiveLoss
from omnifuse.objectives.distributed import Group, batch_offset, gather_sizes, is_distributed
from omnifuse.tasks.base import (
    Inputs,
    Task,
    TaskContext,
    index_inputs,
    present_rows,
    register_task,
)


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
        loss: the objective (holds the temperature, the task's only parameter).
    """

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        a: str,
        b: str,
        head_a: str,
        head_b: str,
        loss: ContrastiveLoss,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.a, self.b, self.head_a, self.head_b = a, b, head_a, head_b
        self.loss = loss

    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss``, ``{a}_to_{b}_accuracy``, ``{b}_to_{a}_accuracy``, ``logit_scale``."""
        # Keep the stored scale at the cap, where (unlike above it) gradients still flow.
        self.loss.logit_scale.constrain_()
        inputs = paired_inputs(self, batch, self.a, self.b)
        pair = embed_pair(model, inputs, self.a, self.b, self.head_a, self.head_b)
        out = self.loss(pair.embed_a, pair.embed_b)
        with torch.no_grad():
            offset = local_offset(pair.embed_a.shape[0], pair.embed_a.device, self.loss.group)
            metrics = {
                f"{self.a}_to_{self.b}_accuracy": _row_hits(out.logits_ab, offset),
                f"{self.b}_to_{self.a}_accuracy": _row_hits(out.logits_ba, offset),
            }
        return {"loss": out.loss, **metrics, "logit_scale": out.logit_scale.detach()}


@register_task("contrastive", "CLIP InfoNCE between two separately encoded modalities.")
def build_contrastive_task(
    name: str, config: ContrastiveTaskConfig, context: TaskContext
) -> ContrastiveTask:
    """Registry builder for :class:`ContrastiveTask`."""
    loss = ContrastiveLoss(config.temperature, config.learnable_temperature, config.max_logit_scale)
    return ContrastiveTask(
        name,
        config.weight,
        config.resolved_inputs(context.model.config),
        config.a,
        config.b,
        config.head_a,
        config.head_b,
        loss,
    )
