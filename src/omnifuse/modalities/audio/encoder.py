"""Audio encoder: conv subsampling (4x fewer frames) + sinusoidal positions + pre-norm Transformer.

The layout follows whisper's audio encoder (two GELU convolutions, fixed sinusoidal positions,
pre-norm blocks, final LayerNorm), with masks so that padded batches give the same outputs at
valid positions as unpadded clips.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.config.audio import SUBSAMPLING, AudioTransformerConfig
from omnifuse.layers import TransformerStack, masked_mean, sinusoidal_positions
from omnifuse.layers.masking import new_mask_token, substitute_mask_token
from omnifuse.modalities.audio.processor import build_audio_processor
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.registry import register_encoder


class ConvSubsampler(nn.Module):
    """Two ``Conv1d(kernel 3, stride 2, padding 1)`` + GELU: ``[B, T, n_mels] -> [B, ⌈T/4⌉, dim]``.

    Padded frames are zeroed before each convolution, so a convolution reads exactly what its own
    zero padding would give on the unpadded clip: padding cannot leak into valid frames. An
    output frame is valid iff its centre input frame is (``mask[:, ::2]``); for a clip of ``L``
    frames that is the first ``⌈L/2⌉`` outputs, the unpadded output length.

    Args:
        n_mels: input feature width.
        dim: output width.
    """

    def __init__(self, n_mels: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Args:
            features: ``[B, T, n_mels]``.
            mask: ``[B, T]`` bool, True at valid frames.

        Returns:
            ``([B, ⌈T/4⌉, dim], [B, ⌈T/4⌉] bool)``.
        """
        x = features.transpose(1, 2)  # (B, n_mels, T)
        for conv in (self.conv1, self.conv2):
            x = F.gelu(conv(x * mask[:, None, :].to(x.dtype)))
            mask = mask[:, ::2]
        return x.transpose(1, 2), mask  # (B, T', dim)


class AudioTransformer(Encoder):
    """Log-mel features -> :class:`EncoderOutput` of ``⌈T/4⌉`` tokens, mean-pooled.

    Masked modelling: after :meth:`enable_token_mask`, the optional input ``token_mask``
    ``[B, ⌈T/4⌉]`` bool (True = masked; one entry per output token, i.e. per 4 frames) replaces
    those subsampled frame embeddings by a learned mask token before positions are added and the
    Transformer runs. The model builder enables it when a ``reconstruction`` head reads this
    encoder.

    Args:
        config: widths, depth, ``max_positions`` and the processor settings (``n_mels``).
    """

    modality: ClassVar[str] = "audio"
    positions: Tensor

    def __init__(self, config: AudioTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.subsample = ConvSubsampler(config.processor.n_mels, config.dim)
        # Fixed table derived from the config: kept out of checkpoints.
        table = sinusoidal_positions(config.max_positions, config.dim)
        self.register_buffer("positions", table, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.transformer = TransformerStack.from_dims(config, norm_eps=config.norm_eps)
        # None until masked modelling needs it, so other models keep their parameter set.
        self.mask_token: nn.Parameter | None
        self.register_parameter("mask_token", None)

    def enable_token_mask(self) -> None:
        """Add the learned mask embedding ``token_mask`` inputs use (idempotent)."""
        if self.mask_token is None:
            self.mask_token = new_mask_token((self.dim,), self.subsample.conv1.weight)

    def _inputs(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Validated ``features [B, T, n_mels]`` and ``mask [B, T]`` (all valid if absent)."""
        if "features" not in inputs:
            raise KeyError(
                f"audio encoder needs 'features' [B, T, n_mels] and 'mask' [B, T]; "
                f"got keys {sorted(inputs)}"
            )
        features = inputs["features"]
        n_mels = self.config.processor.n_mels
        if features.dim() != 3 or features.shape[-1] != n_mels:
            raise ValueError(
                f"audio 'features' must be [B, T, n_mels={n_mels}], got {tuple(features.shape)}"
            )
        mask = inputs.get("mask")
        if mask is None:
            return features, torch.ones(
                features.shape[:2], dtype=torch.bool, device=features.device
            )
        if mask.shape != features.shape[:2]:
            raise ValueError(
                f"audio 'mask' {tuple(mask.shape)} does not match features {tuple(features.shape)}"
            )
        return features, mask.bool()

    def _add_positions(self, x: Tensor) -> Tensor:
        """``[B, N, dim]`` + sinusoidal positions; refuses clips longer than the table."""
        n = x.shape[1]
        if n > self.config.max_positions:
            frames = n * SUBSAMPLING
            raise ValueError(
                f"audio input of ~{frames} frames gives {n} positions after subsampling, more "
                f"than max_positions={self.config.max_positions}; raise max_positions or lower "
                f"processor.max_seconds={self.config.processor.max_seconds}"
            )
        return x + self.positions[:n].to(x.dtype)

    def forward_features(
        self, features: Tensor, mask: Tensor, token_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Subsample and run the Transformer.

        Args:
            features: ``[B, T, n_mels]`` log-mel.
            mask: ``[B, T]`` bool, True at valid frames.
            token_mask: ``[B, ⌈T/4⌉]`` bool, True at tokens to replace by the mask token.

        Returns:
            ``(tokens [B, ⌈T/4⌉, dim], mask [B, ⌈T/4⌉])``; tokens at padded positions are zero.
        """
        x, mask = self.subsample(features, mask)
        if token_mask is not None:
            x = substitute_mask_token(
                x, token_mask, self.mask_token, "the audio encoder", f"{SUBSAMPLING} frames"
            )
        x = self.drop(self._add_positions(x))
        x = self.transformer(x, mask)
        return x * mask[..., None].to(x.dtype), mask

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Encode ``{"features": [B, T, n_mels], "mask": [B, T]}`` (optional ``token_mask``, see
        the class docstring); other keys are ignored.

        Returns:
            tokens ``[B, ⌈T/4⌉, dim]``, mask ``[B, ⌈T/4⌉]``, pooled ``[B, dim]`` (masked mean;
            zeros for a clip without valid frames).
        """
        tokens, mask = self.forward_features(*self._inputs(inputs), inputs.get("token_mask"))
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


@register_encoder(
    "audio",
    "conv_transformer",
    processor=build_audio_processor,
    description="log-mel -> 2 stride-2 convs (4x fewer frames) -> pre-norm Transformer",
)
def build_audio_transformer(
    config: AudioTransformerConfig, processor: Processor[Any], pretrained: bool
) -> AudioTransformer:
    """Registry hook. There are no external audio weights, so ``pretrained`` changes nothing;
    the processor's settings are already in ``config.processor``."""
    return AudioTransformer(config)
