"""Prediction heads. Each head maps an :class:`EncoderOutput` (fused or one modality's) to a
tensor; task objectives live elsewhere.

Importing this package registers the head types ``classification``, ``token_classification``,
``projection``, ``mlm``, ``reconstruction``, ``caption_decoder``, ``whisper_decoder``,
``video_generator`` and ``causal_lm``.
"""

from omnifuse.heads.basic import ClassificationHead, ProjectionHead, TokenClassificationHead
from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.heads.causal_lm import CausalLMHead
from omnifuse.heads.mlm import MLMHead
from omnifuse.heads.reconstruction import ReconstructionHead
from omnifuse.heads.video_generator import VideoGenerator
from omnifuse.heads.whisper_decoder import WhisperDecoder

__all__ = [
    "CaptionDecoder",
    "CausalLMHead",
    "ClassificationHead",
    "MLMHead",
    "ProjectionHead",
    "ReconstructionHead",
    "TokenClassificationHead",
    "VideoGenerator",
    "WhisperDecoder",
]
