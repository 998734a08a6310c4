"""Built-in datasets, generated locally: ``make(name, out)`` writes manifests, media and a card.

==============  ==============================================================  ============
name            what                                                            default size
==============  ==============================================================  ============
shapesworld     procedural scenes: image, captions, VQA, labels, speech, video  5,000
emoji           Noto Color Emoji renders with their Unicode names and groups    3,655 (all)
fortunes        texts of 8 clean ``fortune`` categories, labelled by category   2,676 (all)
speech          spoken sentences from espeak-ng and flite voices               2,000
==============  ==============================================================  ============

Each generator is deterministic for a seed and documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from omnifuse.datasets._common import MissingResourceError

__all__ = ["MissingResourceError", "list_builtin", "make"]

_GENERATORS = {
    "shapesworld": "omnifuse.datasets.shapesworld",
    "emoji": "omnifuse.datasets.emoji",
    "fortunes": "omnifuse.datasets.fortunes",
    "speech": "omnifuse.datasets.speech",
}


def list_builtin() -> list[str]:
    """Names of the built-in datasets, sorted."""
    return sorted(_GENERATORS)


def make(
    name: str,
    out: Path,
    size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Generate built-in dataset ``name`` under ``out``; return the path of its ``card.yaml``.

    Args:
        name: One of :func:`list_builtin`.
        out: Dataset directory (created if needed; existing files are overwritten).
        size: Number of samples; default: the dataset's default size (all items for the real
            datasets, which then take a deterministic subset).
        seed: Seed of every random choice; the same seed gives identical manifests and media.
        progress: Show a rich progress bar.
        **options: Dataset-specific options (see each generator's ``generate``), e.g.
            ``workers=1`` or, for shapesworld, ``modalities=("image",)``.

    Raises:
        ValueError: Unknown name or option, ``size < 1`` or ``seed < 0``.
        MissingResourceError: A system package the dataset needs is missing (the message
            gives the install command).
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown built-in dataset {name!r}; valid: {', '.join(list_builtin())}")
    if size is not None and size < 1:
        raise ValueError(
            f"size={size} must be a positive number of samples (or None for the default)"
        )
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    module = importlib.import_module(_GENERATORS[name])
    card: Path = module.generate(Path(out), size=size, seed=seed, progress=progress, **options)
    return card
