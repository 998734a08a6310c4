"""Space-time ViT over tubelets (ViViT "tubelet embedding", VideoMAE).

A Conv3d cuts the clip into ``tubelet_size x patch_size x patch_size`` tubelets; tokens are
ordered time-major (all patches of tubelet 0, then tubelet 1, ...). Padding frames are zeroed
before the embedding and masked out of attention and pooling, so they cannot change the outputs
of valid tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from omnifuse.config.video import TubeletViTConfig
from omnifuse.layers import TransformerStack, masked_mean
from omnifuse.layers.stem import first_weight, patch_embedding
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.modalities.image.encoder import require_input
from omnifuse.modalities.video.processor import build_video_processor
from omnifuse.registry import register_encoder


class TubeletViT(Encoder):
    """Tubelet embedding + learned space-time positions + :class:`TransformerStack`.

    ``config.stem``: one Conv3d over each tubelet (``"patch"``) or a per-frame convolutional stem
    folded over time by the last conv (``"conv"``, :mod:`omnifuse.layers.stem`).

    Clips may be shorter than ``num_frames`` (a multiple of ``tubelet_size``): the leading rows
    of the position table are used. With ``pooling="cls"`` a [CLS] token is prepended (always
    valid) and pooled; with ``"mean"`` the valid tokens are averaged.

    Args:
        config: architecture, clip length and frame size.
    """

    modality = "video"

    def __init__(self, config: TubeletViTConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.image_size = config.processor.image_size
        self.num_frames = config.processor.num_frames
        self.patches_per_tubelet = (self.image_size // config.patch_size) ** 2
        self.tubelet_embed = patch_embedding(
            config.channels, config.dim, config.patch_size, config.stem, config.tubelet_size
        )
        num_tokens = self.num_frames // config.tubelet_size * self.patches_per_tubelet
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, config.dim))
        self.cls_token: nn.Parameter | None = None
        if config.pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = TransformerStack.from_dims(
            config, norm_eps=config.norm_eps, activation=config.activation
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _check(self, pixel_values: Tensor, frame_mask: Tensor) -> None:
        c, s, tubelet = self.config.channels, self.image_size, self.config.tubelet_size
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[2:]) != (c, s, s):
            shape = tuple(pixel_values.shape)
            raise ValueError(f"pixel_values has shape {shape}; expected [B, T, {c}, {s}, {s}]")
        b, t = pixel_values.shape[:2]
        if t % tubelet or t > self.num_frames:
            raise ValueError(
                f"clip has T={t} frames; expected a multiple of tubelet_size={tubelet} "
                f"and at most num_frames={self.num_frames}"
            )
        if tuple(frame_mask.shape) != (b, t):
            raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}; expected {(b, t)}")

    def token_mask(self, frame_mask: Tensor) -> Tensor:
        """``[B, T]`` frame mask -> ``[B, N]`` token mask: a tubelet is valid if any frame is."""
        b, t = frame_mask.shape
        tubelets = frame_mask.view(b, t // self.config.tubelet_size, -1).any(dim=-1)  # (B, T')
        return tubelets.repeat_interleave(self.patches_per_tubelet, dim=1)  # (B, T' * g * g)

    def embed(self, pixel_values: Tensor, frame_mask: Tensor) -> Tensor:
        """``[B, T, C, S, S]`` -> ``[B, N, D]`` tubelet embeddings with positions."""
        weight = first_weight(self.tubelet_embed)
        keep = frame_mask.to(weight.dtype)[:, :, None, None, None]
        # Zero padding frames so that whatever they hold cannot leak into partly valid tubelets.
        clip = (pixel_values.to(weight.dtype) * keep).transpose(1, 2)  # (B, C, T, S, S)
        grid: Tensor = self.tubelet_embed(clip)  # (B, D, T', g, g)
        tokens = grid.flatten(2).transpose(1, 2)  # (B, T' * g * g, D)
        return tokens + self.pos_embed[:, : tokens.shape[1]]

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Encode ``inputs["pixel_values"]`` ``[B, T, C, S, S]`` with ``inputs["frame_mask"]``
        ``[B, T]`` (optional, default all valid); other keys are ignored.

        Returns:
            tokens ``[B, N, D]`` (``N = T / tubelet_size * (S / patch_size)^2``, plus one
            leading [CLS] token when ``pooling="cls"``), mask ``[B, N]``, pooled ``[B, D]``.
        """
        pixel_values = require_input(inputs, "pixel_values", self.modality)
        frame_mask = inputs.get("frame_mask")
        if frame_mask is None:
            frame_mask = torch.ones(pixel_values.shape[:2], dtype=torch.bool)
        frame_mask = frame_mask.to(device=pixel_values.device, dtype=torch.bool)
        self._check(pixel_values, frame_mask)
        tokens, mask = self.embed(pixel_values, frame_mask), self.token_mask(frame_mask)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        out = self.blocks(self.drop(tokens), mask=mask)
        tokens = out if isinstance(out, Tensor) else out[0]
        pooled = tokens[:, 0] if self.cls_token is not None else masked_mean(tokens, mask)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)


@register_encoder(
    "video",
    "tubelet_vit",
    processor=build_video_processor,
    description="Space-time ViT over tubelets (Conv3d embedding, masked padding frames)",
)
def build_tubelet_vit(
    config: TubeletViTConfig, processor: Processor[Any], pretrained: bool
) -> Encoder:
    """A :class:`TubeletViT` (no external checkpoints exist for it, so ``pretrained`` is unused)."""
    return TubeletViT(config)
