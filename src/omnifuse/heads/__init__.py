"""Prediction heads. Each head maps an :class:`EncoderOutput` (fused or one modality's) to a
tensor; task objectives live elsewhere."""

from omnifuse.heads.basic import ClassificationHead, ProjectionHead

__all__ = ["ClassificationHead", "ProjectionHead"]
