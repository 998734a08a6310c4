"""Video modality: PyAV frame-sampling processor and the tubelet ViT encoder
(registered as ``("video", "tubelet_vit")``)."""

from omnifuse.modalities.video.encoder import TubeletViT, build_tubelet_vit
from omnifuse.modalities.video.processor import (
    VideoProcessor,
    build_video_processor,
    decode_video,
    uniform_indices,
)

__all__ = [
    "TubeletViT",
    "VideoProcessor",
    "build_tubelet_vit",
    "build_video_processor",
    "decode_video",
    "uniform_indices",
]
