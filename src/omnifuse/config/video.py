"""Video tower configs: PyAV frame sampling and the space-time (tubelet) ViT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims
from omnifuse.config.image import FrameConfig, ImageAugmentConfig, Stem, check_stem


class VideoProcessorConfig(FrameConfig):
    """Decode with PyAV, sample ``num_frames`` uniformly, then transform every frame like an image.

    Augmentation parameters (crop box, flip, jitter) are drawn once per clip, so all frames of a
    clip get the same transform.
    """

    num_frames: int = Field(default=8, gt=0)
    max_frames: int = Field(
        default=54_000,
        gt=0,
        description="Refuse videos whose stream holds more frames (30 min at 30 fps), checked "
        "from the container metadata (or a demux-only count) before any frame is decoded.",
    )
    max_resolution: int = Field(
        default=4096,
        gt=0,
        description="Refuse videos whose frames are wider or taller than this many pixels, "
        "checked from the stream metadata before decoding (4096 admits 4K UHD).",
    )


class TubeletViTConfig(TransformerDims):
    """ViT over ``tubelet_size x patch_size x patch_size`` space-time patches (ViViT/VideoMAE)."""

    type: Literal["tubelet_vit"] = "tubelet_vit"
    patch_size: int = Field(default=8, gt=0)
    stem: Stem = "patch"
    tubelet_size: int = Field(default=2, gt=0)
    channels: int = Field(default=3, gt=0)
    processor: VideoProcessorConfig = Field(default_factory=VideoProcessorConfig)
    norm_eps: float = 1e-6
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    pooling: Literal["cls", "mean"] = "mean"

    @model_validator(mode="after")
    def _tubelets_fit(self) -> TubeletViTConfig:
        p = self.processor
        check_stem(self.stem, self.patch_size)
        if p.image_size % self.patch_size != 0:
            raise ValueError(
                f"processor.image_size={p.image_size} must be a multiple of "
                f"patch_size={self.patch_size}"
            )
        if p.num_frames % self.tubelet_size != 0:
            raise ValueError(
                f"processor.num_frames={p.num_frames} must be a multiple of "
                f"tubelet_size={self.tubelet_size}"
            )
        return self


class VideoHFConfig(StrictModel):
    """Any local Hugging Face vision tower (see the image ``hf`` type) applied frame by frame,
    then pooled over time: one token per frame (the tower's pooled frame vector), and the mean
    over real frames. Frame resize, crop, mean and std come from the directory's
    ``preprocessor_config.json``."""

    type: Literal["hf"] = "hf"
    path: Path = Field(description="Local HF vision-tower directory (CLIP, SigLIP, ViT, DINOv2).")
    num_frames: int = Field(default=8, gt=0, description="Frames sampled uniformly per clip.")
    pooling: Literal["model", "cls", "mean"] = Field(
        default="model", description="Per-frame pooling, as the image hf type's."
    )
    temporal_pooling: Literal["mean"] = "mean"
    freeze: bool = False
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig)


def _default_video_type(value: Any) -> Any:
    """Encoders without ``type`` are the native ``tubelet_vit`` (as before ``hf``)."""
    if isinstance(value, dict) and "type" not in value:
        return {"type": "tubelet_vit", **value}
    return value


VideoEncoderConfig = Annotated[
    TubeletViTConfig | VideoHFConfig,
    Field(discriminator="type"),
    BeforeValidator(_default_video_type),
]
