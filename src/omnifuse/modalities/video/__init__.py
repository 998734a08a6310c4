"""Video modality: PyAV frame-sampling processor and the tubelet ViT encoder
(registered as ``("video", "tubelet_vit")``), and any HF vision tower applied frame by frame
(``("video", "hf")``)."""

from omnifuse.modalities.video.adapters import FramewiseVideoEncoder, build_video_hf
from omnifuse.modalities.video.encoder import TubeletViT, build_tubelet_vit
from omnifuse.modalities.video.processor import (
    VideoProcessor,
    build_video_processor,
    decode_video,
    uniform_indices,
)

__all__ = [
    "FramewiseVideoEncoder",
    "TubeletViT",
    "VideoProcessor",
    "build_tubelet_vit",
    "build_video_hf",
    "build_video_processor",
    "decode_video",
    "uniform_indices",
]
