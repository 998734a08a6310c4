"""Vision Transformer (Dosovitskiy et al. 2021) over non-overlapping patches.

Layout follows the Hugging Face/timm ViT (conv patch embedding, a [CLS] token, learned position
embeddings that include the [CLS] slot, pre-norm blocks, final LayerNorm), so HF checkpoints
convert 1:1 (see :mod:`omnifuse.convert.hf_vit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from omnifuse.config.image import ViTConfig
from omnifuse.convert.hf_vit import load_hf_vit
from omnifuse.layers import TransformerStack
from omnifuse.layers.masking import new_mask_token, substitute_mask_token
from omnifuse.layers.stem import first_weight, patch_embedding
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.modalities.image.processor import build_image_processor
from omnifuse.registry import register_encoder


def require_input(inputs: Mapping[str, Tensor], key: str, modality: str) -> Tensor:
    """``inputs[key]``, or a KeyError naming the key the encoder needs and the keys given."""
    if key not in inputs:
        raise KeyError(f"the {modality} encoder needs batch key {key!r}; got keys {sorted(inputs)}")
    return inputs[key]


class ViT(Encoder):
    """Patch embedding + [CLS] + learned positions + :class:`TransformerStack`.

    ``config.stem`` picks the patch embedding: one strided conv (``"patch"``, the HF layout) or
    a convolutional stem (``"conv"``, :mod:`omnifuse.layers.stem`).

    Tokens are ``[B, 1 + N, D]`` with the [CLS] token first and ``N = (S / patch_size)^2``
    patches in row-major order; every token is valid. ``pooling="cls"`` pools the [CLS] token,
    ``"mean"`` averages the patch tokens (the [CLS] token excluded, as in timm's ``avg`` pool).

    Masked image modelling (SimMIM): after :meth:`enable_token_mask`, the optional input
    ``token_mask`` ``[B, N]`` bool (True = masked; patch order, [CLS] not included) replaces those
    patch embeddings by a learned mask token before positions are added and the Transformer
    runs. The model builder enables it when a ``reconstruction`` head reads this encoder.

    Args:
        config: architecture and input size (``config.processor.image_size``).
    """

    modality = "image"

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.image_size = config.processor.image_size
        num_patches = (self.image_size // config.patch_size) ** 2
        self.patch_embed = patch_embedding(
            config.channels, config.dim, config.patch_size, config.stem
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, config.dim))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = TransformerStack.from_dims(
            config,
            norm_first=config.norm_first,
            norm_eps=config.norm_eps,
            activation=config.activation,
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # None until masked modelling needs it, so HF checkpoints keep their exact parameter set.
        self.mask_token: nn.Parameter | None
        self.register_parameter("mask_token", None)

    def enable_token_mask(self) -> None:
        """Add the learned mask embedding ``token_mask`` inputs use (idempotent)."""
        if self.mask_token is None:
            self.mask_token = new_mask_token((1, 1, self.dim), first_weight(self.patch_embed))

    def _check_pixels(self, pixel_values: Tensor) -> None:
        expected = (self.config.channels, self.image_size, self.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values has shape {tuple(pixel_values.shape)}; expected [B, "
                f"{', '.join(map(str, expected))}] (set processor.image_size to change it)"
            )

    def embed(self, pixel_values: Tensor, token_mask: Tensor | None = None) -> Tensor:
        """``[B, C, S, S]`` -> ``[B, 1 + N, D]`` patch + [CLS] embeddings with positions.

        ``token_mask`` ``[B, N]`` (True = masked) swaps those patches for the mask token.
        """
        self._check_pixels(pixel_values)
        grid: Tensor = self.patch_embed(pixel_values.to(first_weight(self.patch_embed).dtype))
        patches = grid.flatten(2).transpose(1, 2)  # (B, D, g, g) -> (B, N, D)
        if token_mask is not None:
            patches = substitute_mask_token(
                patches, token_mask, self.mask_token, "the image encoder", "patch, [CLS] excluded"
            )
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens: Tensor = self.drop(torch.cat([cls, patches], dim=1) + self.pos_embed)
        return tokens

    def forward_features(self, pixel_values: Tensor, token_mask: Tensor | None = None) -> Tensor:
        """``[B, C, S, S]`` (and optional ``[B, N]`` ``token_mask``) -> ``[B, 1 + N, D]`` final
        (normalised) token features."""
        out = self.blocks(self.embed(pixel_values, token_mask))
        return out if isinstance(out, Tensor) else out[0]

    def pool(self, tokens: Tensor) -> Tensor:
        """``[B, 1 + N, D]`` -> ``[B, D]`` according to ``config.pooling``."""
        if self.config.pooling == "cls":
            return tokens[:, 0]
        return tokens[:, 1:].mean(dim=1)

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Encode ``inputs["pixel_values"]`` ``[B, C, S, S]`` (optional ``token_mask`` ``[B, N]``,
        see the class docstring); other keys are ignored.

        Returns:
            tokens ``[B, 1 + N, D]``, mask ``[B, 1 + N]`` (all True), pooled ``[B, D]``.
        """
        pixels = require_input(inputs, "pixel_values", self.modality)
        tokens = self.forward_features(pixels, inputs.get("token_mask"))
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=self.pool(tokens))


@register_encoder(
    "image",
    "vit",
    processor=build_image_processor,
    description="Vision Transformer on patches ([CLS] + learned positions); loads HF ViT weights",
)
def build_vit(config: ViTConfig, processor: Processor[Any], pretrained: bool) -> Encoder:
    """A :class:`ViT`; converts ``config.pretrained`` (a local HF ViT dir) when ``pretrained``."""
    model = ViT(config)
    if pretrained and config.pretrained is not None:
        load_hf_vit(model, config.pretrained)
    return model
