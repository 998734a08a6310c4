"""Video modality: PyAV frame-sampling processor and the tubelet ViT encoder
(registered as ``("video", "tubelet_vit")``), and the ``("video", "hf")`` towers: a VideoMAE,
or any HF vision tower applied frame by frame."""

from omnifuse.modalities.video.adapters import (
    FramewiseVideoEncoder,
    VideoMAEEncoder,
    build_video_hf,
)
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
    "VideoMAEEncoder",
    "VideoProcessor",
    "build_tubelet_vit",
    "build_video_hf",
    "build_video_processor",
    "decode_video",
    "uniform_indices",
]
