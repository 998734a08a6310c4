"""Fusion strategies: ``concat`` (early), ``parallel`` (late), ``hybrid`` (cross-attention).

The strategy classes load on first access: their modules import :mod:`omnifuse.registry`, which
itself imports :mod:`omnifuse.fusion.base` (and so this package), so importing them eagerly here
would be circular whenever the registry is imported first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from omnifuse.fusion.base import FusedOutput, Fusion

if TYPE_CHECKING:
    from omnifuse.fusion.concat import ConcatFusion
    from omnifuse.fusion.hybrid import CoAttentionFusion, ResamplerFusion
    from omnifuse.fusion.parallel import ParallelFusion

_LAZY = {
    "ConcatFusion": "omnifuse.fusion.concat",
    "ParallelFusion": "omnifuse.fusion.parallel",
    "CoAttentionFusion": "omnifuse.fusion.hybrid",
    "ResamplerFusion": "omnifuse.fusion.hybrid",
}

__all__ = [
    "CoAttentionFusion",
    "ConcatFusion",
    "FusedOutput",
    "Fusion",
    "ParallelFusion",
    "ResamplerFusion",
]


def __getattr__(name: str) -> Any:
    """Import a strategy class on first access (see the module docstring)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
