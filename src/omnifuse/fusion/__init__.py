"""Fusion strategies: ``concat`` (early), ``parallel`` (late), ``hybrid`` (cross-attention)."""

from omnifuse.fusion.base import Fusion, FusedOutput

__all__ = ["Fusion", "FusedOutput"]
