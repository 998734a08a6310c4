"""Cross-attention fusion (``hybrid``): ``co_attention`` streams or a ``resampler`` of latents.

- ``co_attention`` (ViLBERT-style): every stream keeps its own blocks; in each layer it runs
  self-attention over itself and cross-attention to the concatenation of the *other* present
  streams, all streams updated from the previous layer's states.
- ``resampler`` (Perceiver/Flamingo-style): ``num_queries`` learned latents run blocks of
  self-attention + cross-attention to the tokens of every present modality, giving a
  fixed-length summary whatever the input lengths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnifuse.config.fusion import HybridFusionConfig
from omnifuse.fusion.base import FusedOutput, Fusion
from omnifuse.fusion.streams import (
    ModalityEmbedding,
    check_input_dims,
    concat_streams,
    prepare_streams,
    presence,
    stream_segments,
    zero_padding,
)
from omnifuse.layers import TransformerBlock, TransformerStack, masked_mean
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import register_fusion


class CoAttentionFusion(Fusion):
    """Each stream self-attends and cross-attends to the other present streams.

    Every configured modality owns ``num_layers`` :class:`~omnifuse.layers.TransformerBlock`
    (``cross_attention=True``) and a final LayerNorm. Layer ``l`` of stream ``m`` attends to
    itself and to the concatenated layer-``l`` inputs of every other present stream (each with
    its modality-type embedding added at the start).

    Outputs: ``tokens`` ``[B, sum(N_m), D]`` = the final streams concatenated in sorted modality
    order (padding zeroed); ``modality_pooled[m]`` = masked mean of stream ``m``; ``pooled`` =
    mean of ``modality_pooled`` over the modalities each sample has.

    Missing modality: a stream never attends to masked positions, so for a sample whose mask row
    for ``m`` is all False every output except ``modality_pooled[m]`` (a zero row) equals the
    output of that sample run without ``m``. A stream with no other stream to attend to (only
    one modality in the batch, or the others all masked for that sample) cross-attends to
    nothing: the attention returns zeros and the sub-layer adds only its output bias, which is
    the same in both cases. A sample with no modality at all gets a zero ``pooled``.

    Args:
        config: width, depth and heads of every stream's blocks.
        input_dims: encoder output width per configured modality.
    """

    def __init__(self, config: HybridFusionConfig, input_dims: Mapping[str, int]) -> None:
        check_input_dims(input_dims)
        super().__init__(input_dims, config.dim)
        self.num_layers = config.num_layers
        self.modality_embed = ModalityEmbedding(self.modalities, config.dim)
        self.blocks = nn.ModuleDict({m: self._stream_blocks(config) for m in self.modalities})
        self.norms = nn.ModuleDict({m: nn.LayerNorm(config.dim) for m in self.modalities})
        self.gradient_checkpointing = False

    @staticmethod
    def _stream_blocks(config: HybridFusionConfig) -> nn.ModuleList:
        return nn.ModuleList(
            TransformerBlock(
                config.dim, config.num_heads, config.mlp_ratio, config.dropout, cross_attention=True
            )
            for _ in range(config.num_layers)
        )

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusedOutput:
        """Fuse any non-empty subset of the configured modalities (see the class docstring)."""
        streams = self.modality_embed(prepare_streams(self, encoded))
        states = {m: s.tokens for m, s in streams.items()}
        masks = {m: s.mask for m, s in streams.items()}
        for layer in range(self.num_layers):
            # Synchronous update: every stream reads the others' states from the same layer.
            states = {m: self._step(m, layer, states, masks) for m in sorted(states)}
        final = {
            m: EncoderOutput(zero_padding(self.norms[m](states[m]), masks[m]), masks[m], s.pooled)
            for m, s in streams.items()
        }
        modality_pooled = {m: masked_mean(f.tokens, f.mask) for m, f in final.items()}
        stacked = torch.stack([modality_pooled[m] for m in sorted(final)], dim=1)  # (B, M, D)
        tokens, mask = concat_streams(final)
        pooled = masked_mean(stacked, presence(final))
        return FusedOutput(tokens, mask, pooled, modality_pooled, stream_segments(final))

    def _step(
        self, modality: str, layer: int, states: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> Tensor:
        """One block of ``modality``'s stream. ``[B, N_m, D] -> [B, N_m, D]``."""
        context, context_mask = _others(modality, states, masks)
        block = cast(nn.ModuleList, self.blocks[modality])[layer]
        x, mask = states[modality], masks[modality]
        if self.gradient_checkpointing and self.training:
            return checkpoint(block, x, mask, context, context_mask, use_reentrant=False)  # type: ignore[no-any-return]
        return block(x, mask, context, context_mask)  # type: ignore[no-any-return]


def _others(
    modality: str, states: dict[str, Tensor], masks: dict[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """Concatenated states and masks of every stream but ``modality``, in sorted order.

    Returns:
        context ``[B, S, D]`` and mask ``[B, S]``. With no other stream, one zero token that is
        masked out, so the cross-attention sees "nothing" exactly as for a sample whose other
        streams are all masked.
    """
    others = [m for m in sorted(states) if m != modality]
    if not others:
        x = states[modality]
        return x.new_zeros(x.shape[0], 1, x.shape[2]), masks[modality].new_zeros(x.shape[0], 1)
    context = torch.cat([states[m] for m in others], dim=1)
    return context, torch.cat([masks[m] for m in others], dim=1)


class ResamplerFusion(Fusion):
    """``num_queries`` learned latents cross-attend to the tokens of every present modality.

    A :class:`~omnifuse.layers.TransformerStack` with ``cross_attention=True`` runs over the
    latents; its context is the concatenation (sorted modality order) of the projected streams
    plus their modality-type embeddings.

    Outputs: ``tokens`` ``[B, num_queries, D]`` = the final latents, ``mask`` all True;
    ``pooled`` = mean of the latents; ``modality_pooled[m]`` = the projected encoder ``pooled``
    vector of ``m`` (the latents mix modalities, so there is no per-modality summary after
    fusion; this is the same dual-encoder embedding ``parallel`` gives).

    Missing modality: masked context positions are never attended to, so for a sample whose
    mask row for ``m`` is all False every output except ``modality_pooled[m]`` (a zero row)
    equals the output of that sample run without ``m``. A sample with no modality at all gets
    the latents' own (input-independent, finite) result.

    Args:
        config: width, depth, heads and ``num_queries``.
        input_dims: encoder output width per configured modality.
    """

    def __init__(self, config: HybridFusionConfig, input_dims: Mapping[str, int]) -> None:
        check_input_dims(input_dims)
        super().__init__(input_dims, config.dim)
        self.modality_embed = ModalityEmbedding(self.modalities, config.dim)
        self.latents = nn.Parameter(torch.randn(config.num_queries, config.dim) * 0.02)
        self.resampler = TransformerStack.from_dims(config, cross_attention=True)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusedOutput:
        """Fuse any non-empty subset of the configured modalities (see the class docstring)."""
        streams = prepare_streams(self, encoded)
        context, context_mask = concat_streams(self.modality_embed(streams))
        b = context.shape[0]
        latents = self.latents.expand(b, -1, -1)  # (B, Q, D)
        out = self.resampler(latents, context=context, context_mask=context_mask)
        mask = context_mask.new_ones(b, out.shape[1])
        modality_pooled = {m: s.pooled for m, s in streams.items()}
        return FusedOutput(out, mask, out.mean(dim=1), modality_pooled)


@register_fusion(
    "hybrid",
    "Cross-attention fusion: co_attention between streams, or a resampler of learned latents.",
)
def build_hybrid(config: HybridFusionConfig, input_dims: Mapping[str, int]) -> Fusion:
    """Registry builder: :class:`CoAttentionFusion` or :class:`ResamplerFusion` by ``mode``."""
    if config.mode == "co_attention":
        return CoAttentionFusion(config, input_dims)
    return ResamplerFusion(config, input_dims)
