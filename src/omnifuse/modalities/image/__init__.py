"""Image modality: PIL-based processor and the ViT encoder (registered as ``("image", "vit")``)."""

from omnifuse.modalities.image.encoder import ViT, build_vit
from omnifuse.modalities.image.processor import ImageProcessor, build_image_processor
from omnifuse.modalities.image.transforms import AugmentParams, FrameTransform

__all__ = [
    "AugmentParams",
    "FrameTransform",
    "ImageProcessor",
    "ViT",
    "build_image_processor",
    "build_vit",
]
