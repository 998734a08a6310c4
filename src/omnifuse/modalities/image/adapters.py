"""Adapter: local Hugging Face vision towers (CLIP/SigLIP vision, ViT, DINOv2) behind the
:class:`Encoder` contract, with omnifuse's :class:`ImageProcessor` set up from the directory's
``preprocessor_config.json`` (resize, centre crop, mean, std).

Batch keys are the native ones (``pixel_values`` ``[B, 3, S, S]``), so an HF tower drops into
any config that had a ViT.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from omnifuse.config.image import ImageHFConfig, ImageProcessorConfig
from omnifuse.layers.transformer import masked_mean
from omnifuse.modalities.base import EncoderOutput, Processor
from omnifuse.modalities.hf import (
    HFTower,
    SavesPreprocessor,
    load_hf_model,
    model_class_name,
    read_preprocessor,
)
from omnifuse.modalities.image.processor import ImageProcessor
from omnifuse.registry import register_encoder

IMAGE_TOWERS: dict[str, str] = {
    "clip": "CLIPVisionModel",
    "clip_vision_model": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "vit": "ViTModel",
    "dinov2": "Dinov2Model",
}
"""HF ``model_type`` -> the transformers class that loads its vision tower (full CLIP and
SigLIP directories yield their vision tower)."""

_NO_CLS = {"SiglipVisionModel"}  # patch tokens only; "model" pooling is its attention head
_RESCALE = 1 / 255


def _square(value: Any, field: str, file: Path) -> int:
    """An HF size (int, ``{"height", "width"}`` or ``{"shortest_edge"}``) as one side."""
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and value["height"] == value.get("width"):
            return int(value["height"])
    raise ValueError(f"{file}: {field}={value!r}; omnifuse's image processor needs square sizes")


def processor_config_from_hf(
    path: Path, augment: Mapping[str, Any] | None = None
) -> ImageProcessorConfig:
    """Our :class:`ImageProcessorConfig` from an HF ``preprocessor_config.json``.

    ``size`` becomes ``resize_size`` (shorter side), ``crop_size`` (when ``do_center_crop``)
    ``image_size``. A fixed ``{"height": h, "width": w}`` resize (ViT, SigLIP) is the same for
    square images; other images are centre-cropped rather than squashed.
    """
    pre = read_preprocessor(path)
    file = path / "preprocessor_config.json"
    if not pre.get("do_resize", True):
        raise ValueError(f"{file}: do_resize=false is not supported (images need one size)")
    rescale = float(pre.get("rescale_factor", _RESCALE)) if pre.get("do_rescale", True) else 1.0
    if abs(rescale - _RESCALE) > 1e-9:
        raise ValueError(f"{file}: rescale_factor={rescale}; only 1/255 is supported")
    resize = _square(pre.get("size", 224), "size", file)
    crop = resize
    if pre.get("do_center_crop", False):
        crop = _square(pre.get("crop_size", resize), "crop_size", file)
    normalize = pre.get("do_normalize", True)
    mean = tuple(pre.get("image_mean", (0.5, 0.5, 0.5))) if normalize else (0.0, 0.0, 0.0)
    std = tuple(pre.get("image_std", (0.5, 0.5, 0.5))) if normalize else (1.0, 1.0, 1.0)
    fields = {"image_size": crop, "resize_size": resize, "mean": mean, "std": std}
    return ImageProcessorConfig.model_validate({**fields, "augment": dict(augment or {})})


class HFImageProcessor(SavesPreprocessor, ImageProcessor):
    """:class:`ImageProcessor` configured from an HF directory; saves that directory's file."""

    def __init__(self, config: ImageProcessorConfig, source: Path) -> None:
        super().__init__(config)
        self.source = source


def build_hf_image_processor(config: ImageHFConfig) -> HFImageProcessor:
    """The processor of the HF vision tower at ``config.path``."""
    model_class_name(config.path, IMAGE_TOWERS, "vision")  # a clear error for other models
    augment = config.augment.model_dump()
    return HFImageProcessor(processor_config_from_hf(config.path, augment), config.path)


def _vision_config(model: nn.Module) -> Any:
    return model.config


class ImageHFEncoder(HFTower):
    """A Hugging Face vision tower as an omnifuse encoder.

    Args:
        model: a transformers vision model whose output has ``last_hidden_state``
            ``[B, N, D]`` (and, for CLIP/SigLIP/DINOv2, ``pooler_output`` ``[B, D]``).
        pooling: ``"model"`` (the tower's own pooling), ``"cls"`` or ``"mean"``.
        freeze: keep the backbone fixed.
    """

    modality: ClassVar[str] = "image"

    def __init__(self, model: nn.Module, pooling: str = "model", freeze: bool = False) -> None:
        name = type(model).__name__
        if pooling == "cls" and name in _NO_CLS:
            raise ValueError(f"{name} has no CLS token; use pooling='model' or 'mean'")
        # DINOv2's mask token only serves masked-image pretraining: no gradient would reach it
        # (breaking DDP and the every-parameter-learns contract), so it is fixed.
        mask_token = getattr(getattr(model, "embeddings", None), "mask_token", None)
        if isinstance(mask_token, nn.Parameter):
            mask_token.requires_grad_(False)
        super().__init__(model, int(_vision_config(model).hidden_size), freeze)
        self.pooling = pooling
        self.image_size = int(_vision_config(model).image_size)

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``pixel_values`` ``[B, 3, S, S]`` -> tokens ``[B, N, D]`` (CLS first, if any)."""
        if "pixel_values" not in inputs:
            raise KeyError(f"image batch needs 'pixel_values'; got keys {sorted(inputs)}")
        pixels = inputs["pixel_values"]
        if pixels.shape[-1] != self.image_size or pixels.shape[-2] != self.image_size:
            raise ValueError(
                f"{type(self.model).__name__} takes {self.image_size}x{self.image_size} images, "
                f"got {tuple(pixels.shape[-2:])}"
            )
        out = self.model(pixel_values=pixels)
        tokens: Tensor = out.last_hidden_state
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        pooler = getattr(out, "pooler_output", None)
        if self.pooling == "mean":
            pooled = masked_mean(tokens, mask)
        elif self.pooling == "model" and pooler is not None:
            pooled = pooler
        else:
            pooled = tokens[:, 0]
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)


def model_kwargs(class_name: str, pooling: str) -> dict[str, Any]:
    """Drop pooling modules that the chosen pooling never runs (they would get no gradient)."""
    if class_name == "ViTModel":
        return {"add_pooling_layer": False}  # a tanh classifier pooler, not ViT's CLS output
    if class_name == "SiglipVisionModel" and pooling != "model":
        return {"vision_use_head": False}
    return {}


def _check_sizes(model: nn.Module, processor: Processor[Any], path: Path) -> None:
    size = int(_vision_config(model).image_size)
    config = getattr(processor, "config", None)
    crop = getattr(config, "image_size", size)
    if crop != size:
        raise ValueError(
            f"{path}: preprocessor_config.json crops {crop}x{crop} images but the model's "
            f"config.json has image_size={size}"
        )


@register_encoder(
    "image",
    "hf",
    processor=build_hf_image_processor,
    description="A local Hugging Face vision tower (CLIP/SigLIP vision, ViT, DINOv2).",
)
def build_image_hf(config: ImageHFConfig, processor: Processor[Any], pretrained: bool) -> HFTower:
    """Wrap the vision tower at ``config.path`` (weights loaded only when ``pretrained``)."""
    class_name = model_class_name(config.path, IMAGE_TOWERS, "vision")
    kwargs = model_kwargs(class_name, config.pooling)
    model = load_hf_model(config.path, pretrained, class_name, **kwargs)
    _check_sizes(model, processor, config.path)
    return ImageHFEncoder(model, config.pooling, config.freeze)


__all__ = [
    "IMAGE_TOWERS",
    "HFImageProcessor",
    "ImageHFEncoder",
    "build_hf_image_processor",
    "build_image_hf",
    "processor_config_from_hf",
]
