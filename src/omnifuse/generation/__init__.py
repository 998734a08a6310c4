"""Text-to-video generation parts: a VQ video tokenizer, an autoregressive code prior, sampling
helpers and MP4/GIF writers.

The ``video_generator`` head (:mod:`omnifuse.heads.video_generator`) assembles the tokenizer and
the prior; the ``video_tokenizer`` and ``video_generation`` tasks train them (see
``docs/video_generation.md``).
"""

from omnifuse.generation.io import denormalize, to_uint8_frames, write_clip, write_gif, write_mp4
from omnifuse.generation.prior import VideoPrior, null_condition
from omnifuse.generation.sampling import (
    SamplingOptions,
    guide,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from omnifuse.generation.vq import VectorQuantizer, VideoTokenizer, VQOutput

__all__ = [
    "SamplingOptions",
    "VQOutput",
    "VectorQuantizer",
    "VideoPrior",
    "VideoTokenizer",
    "denormalize",
    "guide",
    "null_condition",
    "sample_next",
    "to_uint8_frames",
    "top_k_filter",
    "top_p_filter",
    "write_clip",
    "write_gif",
    "write_mp4",
]
