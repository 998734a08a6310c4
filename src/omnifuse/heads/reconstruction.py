"""Reconstruction head for masked modelling: encoder tokens -> patch pixels or audio frames."""

from __future__ import annotations

from torch import Tensor, nn

from omnifuse.config.audio import SUBSAMPLING, AudioTransformerConfig
from omnifuse.config.heads import ReconstructionHeadConfig
from omnifuse.config.image import ViTConfig
from omnifuse.config.model import ModelConfig
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import HeadContext, register_head


class ReconstructionHead(nn.Module):
    """``[B, N, D]`` tokens -> ``[B, N, P]`` predicted values per token (SimMIM's linear head).

    Args:
        in_dim: encoder width ``D``.
        out_dim: ``P``, values per token (pixels of a patch, or frames x mel bins).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, features: EncoderOutput) -> Tensor:
        """``features.tokens`` ``[B, N, D]`` -> ``[B, N, P]``."""
        out: Tensor = self.proj(features.tokens)
        return out


def values_per_token(model: ModelConfig, source: str) -> int:
    """Values one token of ``source``'s encoder stands for.

    Raises:
        ValueError: an encoder without masked-modelling support.
    """
    encoder = getattr(model.encoders, source, None)
    if source == "image" and isinstance(encoder, ViTConfig):
        return encoder.patch_size**2 * encoder.channels
    if source == "audio" and isinstance(encoder, AudioTransformerConfig):
        return SUBSAMPLING * encoder.processor.n_mels
    kind = getattr(encoder, "type", "not configured")
    raise ValueError(
        f"a reconstruction head reads source={source!r} ({kind}); valid choices: 'image' with "
        "a 'vit' encoder, 'audio' with a 'conv_transformer' encoder"
    )


@register_head(
    "reconstruction",
    "Linear map from encoder tokens to patch pixels / audio frames (masked modelling).",
    context=True,
)
def build_reconstruction(config: ReconstructionHeadConfig, context: HeadContext) -> nn.Module:
    """Registry builder: the output width comes from the source encoder's config."""
    return ReconstructionHead(context.in_dim, values_per_token(context.model, config.source))
