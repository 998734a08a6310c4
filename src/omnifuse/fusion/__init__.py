"""Fusion strategies: ``concat`` (early), ``parallel`` (late), ``hybrid`` (cross-attention)."""

from __future__ import annotations

from omnifuse.fusion.base import FusedOutput, Fusion
from omnifuse.fusion.concat import ConcatFusion
from omnifuse.fusion.hybrid import CoAttentionFusion, ResamplerFusion
from omnifuse.fusion.parallel import ParallelFusion

__all__ = [
    "CoAttentionFusion",
    "ConcatFusion",
    "FusedOutput",
    "Fusion",
    "ParallelFusion",
    "ResamplerFusion",
]
