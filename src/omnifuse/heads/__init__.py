"""Prediction heads. Each head maps an :class:`EncoderOutput` (fused or one modality's) to a
tensor; task objectives live elsewhere.

Importing this package registers the head types ``classification``, ``projection``, ``mlm``,
``reconstruction`` and ``caption_decoder``.
"""

from omnifuse.heads.basic import ClassificationHead, ProjectionHead
from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.heads.mlm import MLMHead
from omnifuse.heads.reconstruction import ReconstructionHead

__all__ = [
    "CaptionDecoder",
    "ClassificationHead",
    "MLMHead",
    "ProjectionHead",
    "ReconstructionHead",
]
