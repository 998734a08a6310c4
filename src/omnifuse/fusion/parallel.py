"""Late fusion (``parallel``): streams never interact; pooled vectors are combined at the end.

This is also the dual-encoder shape contrastive retrieval uses: ``modality_pooled`` holds one
embedding per modality in the shared fusion width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from omnifuse.config.fusion import ParallelFusionConfig
from omnifuse.fusion.base import FusedOutput, Fusion
from omnifuse.fusion.streams import (
    ModalityEmbedding,
    check_input_dims,
    concat_streams,
    prepare_streams,
    presence,
    stream_segments,
)
from omnifuse.layers import MultiHeadAttention, masked_mean
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import register_fusion


class GatedPooling(nn.Module):
    """``sum_m softmax_m(gate_m(v_m)) * v_m`` over each sample's present modalities."""

    def __init__(self, modalities: Sequence[str], dim: int) -> None:
        super().__init__()
        self.gates = nn.ModuleDict({m: nn.Linear(dim, 1) for m in modalities})

    def forward(self, vectors: Mapping[str, Tensor], present: Tensor) -> Tensor:
        """``{m: [B, D]}`` (sorted keys match ``present`` columns), ``[B, M]`` -> ``[B, D]``."""
        order = sorted(vectors)
        stacked = torch.stack([vectors[m] for m in order], dim=1)  # (B, M, D)
        scores = torch.cat([self.gates[m](vectors[m]) for m in order], dim=1)  # (B, M)
        # A finite floor instead of -inf: a sample with no modality softmaxes to uniform weights
        # (no NaN) that the presence mask then zeroes.
        scores = scores.masked_fill(~present, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=1) * present.to(scores.dtype)
        return (weights.unsqueeze(-1) * stacked).sum(dim=1)


class AttentionPooling(nn.Module):
    """A learned query attends over each sample's present modality vectors (plus a learned
    per-modality key embedding, so the query can prefer a modality by identity)."""

    def __init__(self, modalities: Sequence[str], dim: int, num_heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.key_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(dim) * 0.02) for m in modalities}
        )
        self.attn = MultiHeadAttention(dim, num_heads)

    def forward(self, vectors: Mapping[str, Tensor], present: Tensor) -> Tensor:
        """``{m: [B, D]}`` (sorted keys match ``present`` columns), ``[B, M]`` -> ``[B, D]``."""
        order = sorted(vectors)
        keys = torch.stack([vectors[m] + self.key_embed[m] for m in order], dim=1)  # (B, M, D)
        query = self.query.expand(keys.shape[0], -1, -1)
        out: Tensor = self.attn(query, context=keys, key_mask=present)[:, 0]  # (B, D)
        # Attention over no key yields the output bias; a sample with nothing gets zeros instead.
        return out * present.any(dim=1, keepdim=True).to(out.dtype)


class MeanPooling(nn.Module):
    """Plain mean of each sample's present modality vectors (zeros when none)."""

    def forward(self, vectors: Mapping[str, Tensor], present: Tensor) -> Tensor:
        """``{m: [B, D]}`` (sorted keys match ``present`` columns), ``[B, M]`` -> ``[B, D]``."""
        return masked_mean(torch.stack([vectors[m] for m in sorted(vectors)], dim=1), present)


class ParallelFusion(Fusion):
    """Late fusion: no cross-modal interaction before the final combination.

    Outputs: ``tokens`` ``[B, sum(N_m), D]`` = the projected streams plus their modality-type
    embeddings, concatenated in sorted modality order (padding zeroed), so decoders can still
    cross-attend to every modality; ``modality_pooled[m]`` ``[B, D]`` = the projected encoder
    ``pooled`` vector of ``m``; ``pooled`` ``[B, D]`` combines the ``modality_pooled`` vectors of
    the modalities present *in each sample* (``pooling``):

    - ``gated``: ``sum_m softmax_m(gate_m(v_m)) * v_m``, one learned scalar gate per modality,
      softmax over the sample's present modalities (:class:`GatedPooling`);
    - ``attention``: a learned query attends over the present vectors (:class:`AttentionPooling`);
    - ``mean``: the plain mean of the present vectors (:class:`MeanPooling`).

    Missing modality: a sample whose mask row for ``m`` is all False has a zero
    ``modality_pooled[m]`` row and ``m`` is left out of its combination, so its ``pooled`` and
    other outputs equal the outputs of the same sample run without ``m``. A sample with no
    modality at all gets a zero ``pooled``. ``dropout`` acts on the projected streams (tokens and
    pooled vectors) in training.

    Args:
        config: width, pooling rule, heads of the attention pooling, dropout.
        input_dims: encoder output width per configured modality.
    """

    def __init__(self, config: ParallelFusionConfig, input_dims: Mapping[str, int]) -> None:
        check_input_dims(input_dims)
        super().__init__(input_dims, config.dim)
        self.modality_embed = ModalityEmbedding(self.modalities, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.pool: nn.Module
        if config.pooling == "gated":
            self.pool = GatedPooling(self.modalities, config.dim)
        elif config.pooling == "attention":
            self.pool = AttentionPooling(self.modalities, config.dim, config.num_heads)
        else:
            self.pool = MeanPooling()

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusedOutput:
        """Fuse any non-empty subset of the configured modalities (see the class docstring)."""
        streams = {
            m: EncoderOutput(self.drop(s.tokens), s.mask, self.drop(s.pooled))
            for m, s in prepare_streams(self, encoded).items()
        }
        tokens, mask = concat_streams(self.modality_embed(streams))
        vectors = {m: s.pooled for m, s in streams.items()}
        pooled = self.pool(vectors, presence(streams))
        return FusedOutput(tokens, mask, pooled, vectors, stream_segments(streams))


@register_fusion(
    "parallel",
    "Late fusion: separate streams; pooled = gated / attention / mean over present modalities.",
)
def build_parallel(config: ParallelFusionConfig, input_dims: Mapping[str, int]) -> Fusion:
    """Registry builder for :class:`ParallelFusion`."""
    return ParallelFusion(config, input_dims)
