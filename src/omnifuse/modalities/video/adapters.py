"""Adapters: Hugging Face video towers behind the :class:`Encoder` contract.

- a VideoMAE directory (``model_type: videomae``) -> ``VideoMAEModel``, a spatio-temporal
  transformer over tubelets (:class:`VideoMAEEncoder`);
- any HF vision tower (the image ``hf`` type) applied frame by frame and pooled over time
  (:class:`FramewiseVideoEncoder`).

The batch is the native video processor's (``pixel_values`` ``[B, T, 3, S, S]``,
``frame_mask`` ``[B, T]``), with frame resize/crop/mean/std from the tower directory's
``preprocessor_config.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.config.video import VideoHFConfig, VideoProcessorConfig
from omnifuse.layers.transformer import masked_mean
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.modalities.hf import (
    HFTower,
    SavesPreprocessor,
    load_hf_model,
    model_class_name,
    read_json_file,
    read_model_type,
)
from omnifuse.modalities.image.adapters import (
    IMAGE_TOWERS,
    ImageHFEncoder,
    model_kwargs,
    processor_config_from_hf,
)
from omnifuse.modalities.video.processor import VideoProcessor
from omnifuse.registry import register_encoder

VIDEO_TOWERS: dict[str, str] = {"videomae": "VideoMAEModel"}
"""HF ``model_type`` -> the transformers class of a native video tower (others: frame-wise)."""


def video_tower_class(path: Path) -> str | None:
    """``VideoMAEModel`` for a VideoMAE directory; None for an image tower (frame-wise).

    Raises:
        ValueError: neither a video nor an image tower (the valid model types are named).
    """
    if read_model_type(path) in VIDEO_TOWERS:
        return VIDEO_TOWERS[read_model_type(path)]
    model_class_name(path, {**IMAGE_TOWERS, **VIDEO_TOWERS}, "video or vision")
    return None


class HFVideoProcessor(SavesPreprocessor, VideoProcessor):
    """:class:`VideoProcessor` with frame settings from an HF vision-tower directory."""

    def __init__(self, config: VideoProcessorConfig, source: Path) -> None:
        super().__init__(config)
        self.source = source


def build_hf_video_processor(config: VideoHFConfig) -> HFVideoProcessor:
    """Frames processed as the tower at ``config.path`` processes images (VideoMAE: its own
    image processor's resize/crop/mean/std, and exactly its ``num_frames``)."""
    if video_tower_class(config.path) is not None:
        _check_num_frames(config)
    frames = processor_config_from_hf(config.path, config.augment.model_dump())
    # The frame settings the tower's image processor defines (image-only fields such as
    # max_pixels stay behind: video has its own bounds).
    shared = {
        k: v for k, v in frames.model_dump().items() if k in VideoProcessorConfig.model_fields
    }
    video = VideoProcessorConfig.model_validate({**shared, "num_frames": config.num_frames})
    return HFVideoProcessor(video, config.path)


def _check_num_frames(config: VideoHFConfig) -> None:
    """VideoMAE's position table fixes the clip length: ``num_frames`` must be its own."""
    expected = int(read_json_file(config.path, "config.json", "the model").get("num_frames", 16))
    if config.num_frames != expected:
        raise ValueError(
            f"model.encoders.video.num_frames={config.num_frames}, but the VideoMAE at "
            f"{config.path} takes clips of exactly {expected} frames; set num_frames: {expected}"
        )


class VideoMAEEncoder(HFTower):
    """A Hugging Face ``VideoMAEModel`` as an omnifuse video encoder.

    Tokens are its tubelet tokens (``T / tubelet_size * (S / patch_size) ** 2``, time-major);
    a tubelet whose frames are all padding is masked. ``pooled`` is the mean over valid tokens
    (VideoMAE has no CLS token; its video classifier mean-pools the same way).
    """

    modality: ClassVar[str] = "video"

    def __init__(self, model: nn.Module, freeze: bool = False) -> None:
        config: Any = model.config  # a transformers VideoMAEConfig
        super().__init__(model, int(config.hidden_size), freeze)
        self.num_frames = int(config.num_frames)
        self.tubelet = int(config.tubelet_size)
        self.grid = (int(config.image_size) // int(config.patch_size)) ** 2  # tokens per tubelet

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``pixel_values`` ``[B, T, 3, S, S]`` + ``frame_mask`` ``[B, T]`` -> tokens
        ``[B, T / tubelet * grid, D]``."""
        if "pixel_values" not in inputs:
            raise KeyError(f"video batch needs 'pixel_values'; got keys {sorted(inputs)}")
        pixels = inputs["pixel_values"]
        batch, time = pixels.shape[:2]
        if time < self.num_frames:  # a batch of short clips: pad to the model's length
            pad = pixels.new_zeros(batch, self.num_frames - time, *pixels.shape[2:])
            pixels = torch.cat([pixels, pad], dim=1)
        elif time > self.num_frames:
            raise ValueError(f"VideoMAE takes {self.num_frames} frames, got {time}")
        frames = inputs.get("frame_mask")
        if frames is None:
            frames = torch.ones(batch, time, dtype=torch.bool, device=pixels.device)
        frames = F.pad(frames.bool(), (0, self.num_frames - time))  # [B, num_frames]
        tokens: Tensor = self.model(pixel_values=pixels).last_hidden_state  # [B, N, D]
        tubelets = frames.reshape(batch, -1, self.tubelet).any(dim=-1)  # [B, T / tubelet]
        mask = tubelets.repeat_interleave(self.grid, dim=1)  # [B, N], time-major as the tokens
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


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
    description="A local HF VideoMAE, or a vision tower (CLIP/SigLIP/ViT/DINOv2) per frame.",
)
def build_video_hf(config: VideoHFConfig, processor: Processor[Any], pretrained: bool) -> Encoder:
    """The VideoMAE at ``config.path``, or its image tower as a frame-wise video encoder."""
    video_class = video_tower_class(config.path)
    if video_class is not None:
        return VideoMAEEncoder(load_hf_model(config.path, pretrained, video_class), config.freeze)
    class_name = model_class_name(config.path, IMAGE_TOWERS, "vision")
    model = load_hf_model(
        config.path, pretrained, class_name, **model_kwargs(class_name, config.pooling)
    )
    return FramewiseVideoEncoder(ImageHFEncoder(model, config.pooling, config.freeze))


__all__ = [
    "VIDEO_TOWERS",
    "FramewiseVideoEncoder",
    "HFVideoProcessor",
    "VideoMAEEncoder",
    "build_hf_video_processor",
    "build_video_hf",
    "video_tower_class",
]
