"""Adapter: any Hugging Face vision tower (the image ``hf`` type) as a video encoder, applied
frame by frame and pooled over time.

The batch is the native video processor's (``pixel_values`` ``[B, T, 3, S, S]``,
``frame_mask`` ``[B, T]``), with frame resize/crop/mean/std from the tower directory's
``preprocessor_config.json``. Output tokens are the per-frame pooled vectors, one per frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from omnifuse.config.video import VideoHFConfig, VideoProcessorConfig
from omnifuse.layers.transformer import masked_mean
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.modalities.hf import SavesPreprocessor, load_hf_model, model_class_name
from omnifuse.modalities.image.adapters import (
    IMAGE_TOWERS,
    ImageHFEncoder,
    model_kwargs,
    processor_config_from_hf,
)
from omnifuse.modalities.video.processor import VideoProcessor
from omnifuse.registry import register_encoder


class HFVideoProcessor(SavesPreprocessor, VideoProcessor):
    """:class:`VideoProcessor` with frame settings from an HF vision-tower directory."""

    def __init__(self, config: VideoProcessorConfig, source: Path) -> None:
        super().__init__(config)
        self.source = source


def build_hf_video_processor(config: VideoHFConfig) -> HFVideoProcessor:
    """Frames processed as the tower at ``config.path`` processes images."""
    model_class_name(config.path, IMAGE_TOWERS, "vision")
    frames = processor_config_from_hf(config.path, config.augment.model_dump())
    # The frame settings the tower's image processor defines (image-only fields such as
    # max_pixels stay behind: video has its own bounds).
    shared = {
        k: v for k, v in frames.model_dump().items() if k in VideoProcessorConfig.model_fields
    }
    video = VideoProcessorConfig.model_validate({**shared, "num_frames": config.num_frames})
    return HFVideoProcessor(video, config.path)


class FramewiseVideoEncoder(Encoder):
    """An image encoder run on every real frame, mean-pooled over time.

    Args:
        frames: the per-frame encoder (its ``pooled`` output is the frame's vector).
    """

    modality: ClassVar[str] = "video"

    def __init__(self, frames: Encoder) -> None:
        super().__init__()
        self.frames = frames
        self.dim = frames.dim

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``pixel_values`` ``[B, T, 3, S, S]`` + ``frame_mask`` ``[B, T]`` -> tokens
        ``[B, T, D]`` (one per frame; padded frames are zeros and never encoded)."""
        if "pixel_values" not in inputs:
            raise KeyError(f"video batch needs 'pixel_values'; got keys {sorted(inputs)}")
        pixels = inputs["pixel_values"]
        batch, time = pixels.shape[:2]
        mask = inputs.get("frame_mask")
        if mask is None:
            mask = torch.ones(batch, time, dtype=torch.bool, device=pixels.device)
        mask = mask.bool()
        encoded = self.frames({"pixel_values": pixels[mask]}).pooled  # [F, D], F real frames
        tokens = encoded.new_zeros(batch, time, self.dim)
        tokens[mask] = encoded
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.frames.set_gradient_checkpointing(enabled)

    def save_assets(self, directory: Path) -> dict[str, Any]:
        return self.frames.save_assets(directory)


@register_encoder(
    "video",
    "hf",
    processor=build_hf_video_processor,
    description="A local HF vision tower (CLIP/SigLIP/ViT/DINOv2) per frame, mean over time.",
)
def build_video_hf(config: VideoHFConfig, processor: Processor[Any], pretrained: bool) -> Encoder:
    """The tower at ``config.path`` as a frame-wise video encoder."""
    class_name = model_class_name(config.path, IMAGE_TOWERS, "vision")
    model = load_hf_model(
        config.path, pretrained, class_name, **model_kwargs(class_name, config.pooling)
    )
    return FramewiseVideoEncoder(ImageHFEncoder(model, config.pooling, config.freeze))


__all__ = [
    "FramewiseVideoEncoder",
    "HFVideoProcessor",
    "build_hf_video_processor",
    "build_video_hf",
]
