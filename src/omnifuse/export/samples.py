"""Sample batches for tracing and parity checks: two batches per task, of different batch sizes
and (for text and audio) different sequence lengths, so a graph whose dynamic axes were baked in
at trace time fails its parity check instead of shipping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omnifuse.errors import InferenceError
from omnifuse.models.builder import Processors
from omnifuse.types import Inputs

TEXTS = (
    ("a red square", "a tiny green [MASK] near the top"),
    ("blue", "a [MASK]", "red"),
)
"""Texts of the two sample batches (with ``[MASK]`` so a fill-mask task has work to do); the
second batch is shorter, so the text length differs even under a short tokenizer limit."""

AUDIO_SECONDS = ((0.5, 1.0), (0.3, 0.8, 1.4))
IMAGE_SHAPES = (((40, 48, 3), (32, 32, 3)), ((24, 30, 3), (64, 40, 3), (32, 32, 3)))


def raw_samples(modality: str, index: int, seed: int = 0) -> list[Any]:
    """Raw inputs of sample batch ``index`` (0: two samples, 1: three) for ``modality``.

    Raises:
        InferenceError: a modality without sample inputs (video).
    """
    rng = np.random.default_rng(seed + index)
    if modality == "text":
        return list(TEXTS[index])
    if modality == "image":
        return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in IMAGE_SHAPES[index]]
    if modality == "audio":
        rate = 16_000
        return [
            ((0.1 * rng.standard_normal(int(rate * s))).astype(np.float32), rate)
            for s in AUDIO_SECONDS[index]
        ]
    raise InferenceError(f"no sample inputs for modality {modality!r}; it cannot be exported")


def processed_samples(processors: Processors, modalities: Sequence[str]) -> tuple[Inputs, Inputs]:
    """The two sample batches of ``modalities``, processed by the run's own processors."""
    batches = []
    for index in (0, 1):
        batch = {}
        for modality in sorted(modalities):
            if modality not in processors:
                raise InferenceError(f"the model has no {modality} processor")
            batch[modality] = processors[modality](raw_samples(modality, index))
        batches.append(batch)
    return batches[0], batches[1]
