"""Length-bucketed batches: samples of similar length batched together, so padding (and the
work spent on it) shrinks, for any modality.

A slot's stream (see :mod:`omnifuse.data.streaming`) is cut into *windows* of
``bucket_by_length x batch_size`` consecutive samples. Each window is decoded, sorted by length
(stable, so ties keep the stream's shuffled order), cut into batches, and the batches are
yielded in an order shuffled per ``(seed, epoch, slot, window)``. Every sample is still read
exactly once per epoch by exactly one slot (rank x worker), and the batches of an epoch are a
pure function of the seed, so runs are deterministic and resumable.

Lengths are what the processors report after loading: ``processor.sample_length(sample)`` when
the processor defines it (the Whisper feature processor: frames of audio), else the first
dimension of a tensor (native log-mel frames, video frames) or the length of a list (text ids).

Resume: a worker's position inside a window is encoded as ``window start + batches already
yielded`` (fewer than the window's samples, so unambiguous); resuming decodes that window again
and skips those batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor

from omnifuse.modalities.base import Processor


def sample_length(inputs: Mapping[str, Any], processors: Mapping[str, Processor[Any]]) -> int:
    """Length of one loaded sample: the sum over its modalities (modality -> ``load`` output).

    Raises:
        TypeError: a loaded input whose length cannot be told (define ``sample_length`` on its
            processor).
    """
    total = 0
    for modality, loaded in inputs.items():
        measure = getattr(processors.get(modality), "sample_length", None)
        if measure is not None:
            total += int(measure(loaded))
        elif isinstance(loaded, Tensor):
            total += int(loaded.shape[0]) if loaded.dim() > 0 else 1
        elif isinstance(loaded, list):
            total += len(loaded)
        else:
            raise TypeError(
                f"cannot tell the length of a loaded {modality} sample of type "
                f"{type(loaded).__name__} for data.bucket_by_length; give its processor a "
                "sample_length(sample) method"
            )
    return total


def bucket_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random | None
) -> list[list[int]]:
    """Indices of one window's samples grouped into batches of similar length.

    Args:
        lengths: Length of each sample of the window, in stream order.
        batch_size: Samples per batch (the last, longest batch may be smaller).
        rng: Shuffles the order of the batches; None keeps them shortest first.

    Returns:
        Batches of indices into ``lengths``; together they hold every index once.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])  # stable: ties keep order
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def split_position(position: int, window: int) -> tuple[int, int]:
    """A bucketed worker position -> (window start in samples, batches of it already yielded)."""
    start = (position // window) * window
    return start, position - start


def windows(items: Iterator[Any], window: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``window`` items (the last may be shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == window:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["bucket_batches", "sample_length", "split_position", "windows"]
