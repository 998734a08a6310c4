"""Image tower configs: PIL/numpy preprocessing and the ViT patch encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageAugmentConfig(StrictModel):
    """Training-time augmentation (off at eval)."""

    enabled: bool = False
    crop_scale: tuple[float, float] = (0.8, 1.0)
    hflip: bool = False
    color_jitter: float = Field(default=0.0, ge=0.0, le=1.0)


class ImageProcessorConfig(StrictModel):
    """Resize the shorter side to ``resize_size``, centre-crop ``image_size``, normalise."""

    image_size: int = Field(default=64, gt=0)
    resize_size: int | None = Field(default=None, description="Defaults to image_size.")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig)


class ViTConfig(TransformerDims):
    """Vision Transformer over non-overlapping patches."""

    type: Literal["vit"] = "vit"
    patch_size: int = Field(default=8, gt=0)
    channels: int = Field(default=3, gt=0)
    processor: ImageProcessorConfig = Field(default_factory=ImageProcessorConfig)
    norm_first: bool = True
    norm_eps: float = 1e-6
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    pooling: Literal["cls", "mean"] = "cls"
    pretrained: Path | None = Field(
        default=None, description="Local HF ViT directory converted into this encoder."
    )

    @model_validator(mode="after")
    def _patch_fits(self) -> ViTConfig:
        size = self.processor.image_size
        if size % self.patch_size != 0:
            raise ValueError(
                f"processor.image_size={size} must be a multiple of patch_size={self.patch_size}"
            )
        return self


ImageEncoderConfig = ViTConfig
