"""Image tower configs: PIL/numpy preprocessing and the ViT patch encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


Stem = Annotated[
    Literal["patch", "conv"],
    Field(
        description="patch: one strided conv per patch (ViT; HF layout). conv: 3x3 stride-2 convs "
        "with GroupNorm and GELU, then a 1x1 projection (Xiao et al. 2021); learns shapes from far "
        "fewer samples; needs a power-of-two patch_size."
    ),
]
"""The patch embedding of the image and video towers (``omnifuse.layers.stem``)."""


def check_stem(stem: str, patch_size: int) -> None:
    """A conv stem halves the resolution ``log2(patch_size)`` times: the patch must be 2^k."""
    if stem == "conv" and (patch_size < 2 or patch_size & (patch_size - 1)):
        raise ValueError(
            f"stem='conv' needs a power-of-two patch_size (2, 4, 8, 16...), got "
            f"patch_size={patch_size}; use stem='patch' or change patch_size"
        )


class ImageAugmentConfig(StrictModel):
    """Training-time augmentation (off at eval).

    ``crop_scale`` bounds the area fraction of the random resized crop; ``color_jitter`` is the
    maximum relative change of brightness, contrast and saturation.
    """

    enabled: bool = False
    crop_scale: tuple[float, float] = (0.8, 1.0)
    hflip: bool = False
    color_jitter: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _scale_range(self) -> ImageAugmentConfig:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"crop_scale={self.crop_scale} must satisfy 0 < low <= high <= 1, e.g. (0.8, 1.0)"
            )
        return self


class FrameConfig(StrictModel):
    """Per-frame preprocessing shared by images and video frames.

    Resize the shorter side to ``resize_size`` (bicubic), centre-crop ``image_size``, scale to
    [0, 1] and normalise with ``mean``/``std``; ``augment`` applies when training.
    """

    image_size: int = Field(default=64, gt=0)
    resize_size: int | None = Field(default=None, description="Defaults to image_size.")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig)

    @model_validator(mode="after")
    def _sizes(self) -> FrameConfig:
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ValueError(
                f"resize_size={self.resize_size} is smaller than image_size={self.image_size}; "
                f"use resize_size >= image_size (or leave it unset)"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std={self.std} must be positive in every channel")
        return self


DEFAULT_MAX_PIXELS = 100_000_000
"""100 megapixels: above Pillow's own bomb warning (89 MP), far above any photo a model reads."""


class ImageProcessorConfig(FrameConfig):
    """Resize the shorter side to ``resize_size``, centre-crop ``image_size``, normalise.

    ``max_pixels`` bounds what a file may decode to: it is checked against the header's size
    before the pixel data is read, so a decompression bomb is refused without allocating it.
    """

    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        gt=0,
        description="Refuse image files whose header declares more pixels (width x height) "
        "than this, before decoding them (decompression bombs).",
    )


class ViTConfig(TransformerDims):
    """Vision Transformer over non-overlapping patches."""

    type: Literal["vit"] = "vit"
    patch_size: int = Field(default=8, gt=0)
    stem: Stem = "patch"
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
        check_stem(self.stem, self.patch_size)
        if self.stem == "conv" and self.pretrained is not None:
            raise ValueError(
                "pretrained HF ViT weights hold a single-conv patch embedding; use stem='patch' "
                "with pretrained, or drop pretrained to train a conv stem"
            )
        return self


class ImageHFConfig(StrictModel):
    """A local Hugging Face vision tower (CLIP/SigLIP vision, ViT, DINOv2; a full CLIP or SigLIP
    directory gives its vision tower). Resize, crop, mean and std come from the directory's
    ``preprocessor_config.json``."""

    type: Literal["hf"] = "hf"
    path: Path = Field(description="Local HF model directory (config.json, weights, processor).")
    pooling: Literal["model", "cls", "mean"] = Field(
        default="model",
        description="model: the tower's own pooled output (CLIP/SigLIP pooler_output, "
        "DINOv2 normed CLS; ViT: CLS); cls: first token; mean: mean over tokens.",
    )
    freeze: bool = False
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig)


def _default_image_type(value: Any) -> Any:
    """Encoders without ``type`` are the native ``vit`` (as before ``hf``)."""
    if isinstance(value, dict) and "type" not in value:
        return {"type": "vit", **value}
    return value


ImageEncoderConfig = Annotated[
    ViTConfig | ImageHFConfig, Field(discriminator="type"), BeforeValidator(_default_image_type)
]
