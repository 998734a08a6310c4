"""Early fusion (``concat``): one joint Transformer over the tokens of every present modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from omnifuse.config.fusion import ConcatFusionConfig
from omnifuse.fusion.base import FusedOutput, Fusion
from omnifuse.fusion.streams import (
    ModalityEmbedding,
    check_input_dims,
    concat_streams,
    prepare_streams,
    split_streams,
    stream_segments,
    zero_padding,
)
from omnifuse.layers import TransformerStack, masked_mean
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import register_fusion


class ConcatFusion(Fusion):
    """Early fusion: every token of every present modality attends to every other.

    Each projected stream gets its modality-type embedding; a learned fusion ``[CLS]`` token is
    prepended, the streams are concatenated in sorted modality order, and one
    :class:`~omnifuse.layers.TransformerStack` runs over the joint sequence.

    Outputs: ``tokens`` ``[B, 1 + sum(N_m), D]`` (``[CLS]`` first, then each modality's segment,
    padding zeroed), ``pooled`` = the ``[CLS]`` output, ``modality_pooled[m]`` = masked mean of
    modality ``m``'s output segment.

    Missing modality: a sample whose mask row is all False for ``m`` never attends to ``m``'s
    positions (they are masked keys), so its ``tokens``/``pooled`` and its other modalities'
    ``modality_pooled`` equal the outputs of the same sample run without ``m``; its
    ``modality_pooled[m]`` row is zero. The ``[CLS]`` token is always valid, so a sample with no
    modality at all still gets a finite (input-independent) ``pooled``.

    Args:
        config: width, depth and heads of the joint Transformer.
        input_dims: encoder output width per configured modality.
    """

    def __init__(self, config: ConcatFusionConfig, input_dims: Mapping[str, int]) -> None:
        check_input_dims(input_dims)
        super().__init__(input_dims, config.dim)
        self.modality_embed = ModalityEmbedding(self.modalities, config.dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.transformer = TransformerStack.from_dims(config)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusedOutput:
        """Fuse any non-empty subset of the configured modalities (see the class docstring)."""
        streams = self.modality_embed(prepare_streams(self, encoded))
        tokens, mask = concat_streams(streams)
        b = tokens.shape[0]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, 1+N, D)
        mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        out = zero_padding(self.transformer(tokens, mask), mask)
        segments = split_streams(out[:, 1:], streams)
        modality_pooled = {m: masked_mean(segments[m], streams[m].mask) for m in segments}
        return FusedOutput(out, mask, out[:, 0], modality_pooled, stream_segments(streams, 1))


@register_fusion(
    "concat",
    "Early fusion: modality embeddings + [CLS] + one joint Transformer over all tokens.",
)
def build_concat(config: ConcatFusionConfig, input_dims: Mapping[str, int]) -> Fusion:
    """Registry builder for :class:`ConcatFusion`."""
    return ConcatFusion(config, input_dims)
