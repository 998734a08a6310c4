"""Image modality: PIL-based processor, the ViT encoder (registered as ``("image", "vit")``) and
Hugging Face vision towers (``("image", "hf")``)."""

from omnifuse.modalities.image.adapters import HFImageProcessor, ImageHFEncoder, build_image_hf
from omnifuse.modalities.image.encoder import ViT, build_vit
from omnifuse.modalities.image.processor import ImageProcessor, build_image_processor
from omnifuse.modalities.image.transforms import AugmentParams, FrameTransform

__all__ = [
    "AugmentParams",
    "FrameTransform",
    "HFImageProcessor",
    "ImageHFEncoder",
    "ImageProcessor",
    "ViT",
    "build_image_hf",
    "build_image_processor",
    "build_vit",
]
