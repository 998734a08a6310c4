"""Raw sample -> processed sample through the model's processors, and the bad-sample policy.

Media read from shards are bytes; they are written to a short-lived temporary file (in
``/dev/shm`` when available) and given to the processor as a path, so shards and local manifests
go through exactly the same processor code.
"""

from __future__ import annotations

import copy
import os
import random
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from omnifuse.data.collate import LoadedSample, TargetField
from omnifuse.data.sources import Media, RawSample
from omnifuse.modalities.base import MediaError, Processor

BAD_FRACTION_WARMUP = 100
"""Samples seen before the bad-sample fraction is enforced mid-epoch (always at epoch end)."""

_SPILL_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _nbytes(value: Any) -> int:
    """Bytes held by the tensors of a processed sample (a tensor, or a dict/tuple/list of them)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, tuple | list):
        return sum(_nbytes(v) for v in value)
    return 0


class MediaCache:
    """Processed media kept in memory, so that epochs after the first skip decoding.

    Only deterministic loads are cached (a processor that is not :attr:`augmenting`); the key
    holds the processor type and config, the file's path, size and mtime, so a changed file or
    processor never reads a stale entry. Entries are added until ``limit_bytes`` is reached and
    never evicted (an epoch touches every sample, so LRU eviction would only thrash). One cache
    per process: DataLoader workers fill their own.
    """

    def __init__(self, limit_bytes: int = 0) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: dict[tuple[Any, ...], Any] = {}

    def reserve(self, limit_bytes: int) -> None:
        """Raise the budget to at least ``limit_bytes`` (several data streams share the cache)."""
        self.limit_bytes = max(self.limit_bytes, limit_bytes)

    def clear(self) -> None:
        """Drop every entry (the budget stays)."""
        self._items.clear()
        self.used_bytes = self.hits = self.misses = 0

    @staticmethod
    def tag(processor: Processor[Any]) -> tuple[str, str] | None:
        """What identifies ``processor``'s loads in keys (its type and config); None when they
        are not cacheable because it augments."""
        if processor.augmenting:
            return None
        return type(processor).__name__, repr(getattr(processor, "config", None))

    @staticmethod
    def key(tag: tuple[str, str], path: Path) -> tuple[Any, ...] | None:
        """The entry of a processor (its :meth:`tag`) loading ``path``; None when the file
        cannot be stat'ed (the processor then raises the proper MediaError)."""
        try:
            stat = path.stat()
        except OSError:
            return None
        return (*tag, str(path), stat.st_size, stat.st_mtime_ns)

    def get(self, key: tuple[Any, ...]) -> Any | None:
        """The cached sample of ``key``, or None."""
        value = self._items.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        """Keep ``value`` if it fits in the budget."""
        size = _nbytes(value)
        if self.used_bytes + size <= self.limit_bytes:
            self._items[key] = value
            self.used_bytes += size


MEDIA_CACHE = MediaCache()
"""The process's cache, used by decoders built with ``cache=True`` (``data.cache_mb``)."""


class TooManyBadSamples(RuntimeError):
    """More than ``max_bad_fraction`` of the samples seen were bad (``on_bad_sample=skip``)."""


@dataclass(frozen=True)
class BadSamplePolicy:
    """What to do with a sample whose media cannot be loaded.

    Attributes:
        mode: ``error`` raises the :class:`MediaError` (path and reason); ``skip`` drops the
            sample, counts and logs it.
        max_fraction: With ``skip``, the most bad samples tolerated, as a fraction of those seen.
        warmup: Samples seen before the fraction is enforced mid-epoch.
    """

    mode: Literal["error", "skip"] = "error"
    max_fraction: float = 0.01
    warmup: int = BAD_FRACTION_WARMUP

    def check(self, bad: int, seen: int, examples: list[str], final: bool = False) -> None:
        """Raise :class:`TooManyBadSamples` if ``bad`` is over the tolerated share of ``seen``."""
        if bad == 0 or bad <= self.max_fraction * seen or (seen < self.warmup and not final):
            return
        shown = "\n".join(f"  - {e}" for e in examples[:5])
        raise TooManyBadSamples(
            f"{bad} of {seen} samples ({bad / seen:.1%}) could not be loaded, more than "
            f"max_bad_fraction={self.max_fraction}; first ones:\n{shown}\n"
            "Run `omnifuse data check` on the manifest to list every problem."
        )


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed the CPU RNGs of torch, numpy and ``random`` for a block, then restore them.

    Processors draw augmentation from these global generators; seeding per sample makes
    augmentation a function of (seed, epoch, worker, position), so a resumed run repeats it, and
    restoring keeps the caller's random stream untouched (matters with ``num_workers=0``).
    """
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def _as_path(media: Media) -> Iterator[Path]:
    """A path to the media: itself, or a temporary file holding shard bytes."""
    if isinstance(media, Path):
        yield media
        return
    payload, suffix = media
    fd, name = tempfile.mkstemp(suffix=suffix, dir=_SPILL_DIR)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        yield Path(name)
    finally:
        os.unlink(name)


class SampleDecoder:
    """Loads a :class:`RawSample` with the processors and encodes its targets.

    Args:
        processors: Modality -> processor; shallow copies are kept so that this decoder's
            train/eval mode does not affect other users of the same processors.
        fields: Target fields to encode.
        training: Put the processors in training mode (augmentation).
        text_field: The row field fed to the text processor (``text`` unless configured).
        cache: Keep processed media files in :data:`MEDIA_CACHE` (deterministic loads only).
        alternatives: Field -> list field; in training each load draws the field's value from
            that list (``DataConfig.alternatives``).
    """

    def __init__(
        self,
        processors: Mapping[str, Processor[Any]],
        fields: Mapping[str, TargetField],
        training: bool = False,
        text_field: str = "text",
        cache: bool = False,
        alternatives: Mapping[str, str] | None = None,
    ) -> None:
        self.processors = {m: copy.copy(p).train(training) for m, p in sorted(processors.items())}
        self.cache = MEDIA_CACHE if cache else None
        # Train/eval mode is fixed here, so whether and how a modality is cached is too.
        self._cache_tags = (
            {m: MediaCache.tag(p) for m, p in self.processors.items()} if cache else {}
        )
        self.fields = dict(fields)
        self.training = training
        self.text_field = text_field
        self.alternatives = dict(alternatives or {}) if training else {}

    def decode(self, raw: RawSample, seed: int | None = None) -> LoadedSample:
        """Process one sample; ``seed`` (training only) fixes its augmentation.

        Raises:
            MediaError: unreadable media, empty text, a bad target value; names the file or
                shard member and the sample's manifest line.
        """
        if seed is None or not self.training:
            return self._decode(raw)
        with seeded_rng(seed):
            return self._decode(raw)

    def _decode(self, raw: RawSample) -> LoadedSample:
        fields = self._drawn_fields(raw)
        inputs: dict[str, Any] = {}
        for modality, processor in self.processors.items():
            value: Any = (
                fields.get(self.text_field) if modality == "text" else raw.media.get(modality)
            )
            if value is not None:
                inputs[modality] = self._load(processor, modality, value, raw)
        targets = {n: f.encode(fields.get(n), raw.source) for n, f in self.fields.items()}
        return LoadedSample(raw.id, inputs, targets)

    def _drawn_fields(self, raw: RawSample) -> dict[str, Any]:
        """``raw.fields`` with each :attr:`alternatives` field drawn from its list (``random``:
        seeded per sample by :meth:`decode`). A missing or empty list keeps the stored value."""
        if not self.alternatives:
            return raw.fields
        fields = dict(raw.fields)
        for name, pool in self.alternatives.items():
            options = raw.fields.get(pool)
            if options is None or options == []:
                continue
            if not isinstance(options, list):
                raise MediaError(
                    raw.source,
                    f"data.alternatives: field {pool!r} (alternatives to {name!r}) must be a "
                    f"list, got {type(options).__name__} [sample {raw.id!r}]",
                )
            fields[name] = options[random.randrange(len(options))]
        return fields

    @staticmethod
    def _cached_load(
        cache: MediaCache, tag: tuple[str, str] | None, processor: Processor[Any], path: Path
    ) -> Any:
        key = None if tag is None else cache.key(tag, path)
        if key is None:
            return processor.load(path)
        value = cache.get(key)
        if value is None:
            value = processor.load(path)
            cache.put(key, value)
        return value

    def _load(self, processor: Processor[Any], modality: str, value: Any, raw: RawSample) -> Any:
        try:
            if modality == "text":
                return processor.load(value)
            if self.cache is not None and isinstance(value, Path):
                tag = self._cache_tags[modality]
                return self._cached_load(self.cache, tag, processor, value)
            with _as_path(value) as path:
                return processor.load(path)
        except MediaError as err:
            where = f"{raw.source} ({modality})" if isinstance(value, tuple) else err.source
            raise MediaError(where, f"{err.reason} [sample {raw.id!r}, {raw.source}]") from None
