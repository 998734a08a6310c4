"""Deterministic, resumable streaming of a :class:`~omnifuse.data.sources.Source` in batches.

Every (rank, worker) pair is a *slot* that reads its own part of the data:

* manifests (one sample per unit) give each slot a fixed share (row ``i`` goes to slot
  ``i % num_slots``), read in the order of a permutation drawn per epoch with
  ``Random(seed, epoch)``: a worker decodes the same samples every epoch, so its share of the
  media cache (``data.cache_mb``) serves every epoch after the first;
* shard sets deal shards round-robin to the slots (a fixed assignment, so epoch lengths never
  change), each slot reads its shards in an order shuffled per ``(seed, epoch, slot)`` through a
  shuffle buffer seeded the same way; with fewer shards than slots every slot reads all shards
  and keeps every ``num_slots``-th sample.

A slot's stream is therefore a pure function of ``(seed, epoch, rank, worker)``. Worker processes
persist across epochs (they keep their media cache); each epoch's :class:`EpochPlan` reaches them
through a small shared-memory tensor (:class:`PlanBoard`). The loader's
state is ``(epoch, samples consumed per worker, which worker is next)``: on resume each worker
skips what it had consumed (before decoding media) and the workers are renumbered so that the
DataLoader's round-robin continues where it stopped — the batches after a resume are exactly
those an uninterrupted run would have produced.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from omnifuse import distributed
from omnifuse.data.bucketing import bucket_batches, sample_length, split_position, windows
from omnifuse.data.collate import LoadedSample, collate_samples
from omnifuse.data.decode import MEDIA_CACHE, BadSamplePolicy, SampleDecoder
from omnifuse.data.sources import RawSample, Source
from omnifuse.faults import fault_point
from omnifuse.modalities.base import MediaError
from omnifuse.types import Batch

log = logging.getLogger("omnifuse.data")

T = TypeVar("T")
Meta = dict[str, Any]
Item = tuple[Batch | None, Meta]
"""What a worker sends: a batch (None for the end-of-stream report) and its bookkeeping."""

STATE_VERSION = 1
MAX_EXAMPLES = 20


@dataclass(frozen=True)
class EpochPlan:
    """What every worker needs to know to produce its part of one epoch.

    Attributes:
        epoch: The epoch number (seeds shuffling).
        rank: This process's rank; ``world_size`` the number of ranks.
        num_workers: Logical workers per rank (1 when loading in the main process).
        rotation: Physical worker ``p`` plays logical worker ``(p + rotation) % num_workers``.
        starts: Samples each logical worker already consumed this epoch.
    """

    epoch: int
    rank: int = 0
    world_size: int = 1
    num_workers: int = 1
    rotation: int = 0
    starts: tuple[int, ...] = (0,)


class PlanBoard:
    """An :class:`EpochPlan` in shared memory, readable by worker processes started earlier.

    Persistent workers hold the copy of the dataset made when they started, so an attribute set
    in the main process afterwards never reaches them; the values of a shared tensor do. Layout
    (int64): ``[epoch, rank, world_size, num_workers, rotation, *starts]``.

    Args:
        num_workers: Logical workers of the plans it will hold (fixes the tensor's size).
    """

    HEADER = 5

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self._values = torch.zeros(self.HEADER + num_workers, dtype=torch.long)
        self._values.share_memory_()  # type: ignore[no-untyped-call]  # untyped in torch

    def write(self, plan: EpochPlan) -> None:
        """Publish ``plan`` (its ``num_workers`` must be the board's)."""
        head = (plan.epoch, plan.rank, plan.world_size, plan.num_workers, plan.rotation)
        self._values.copy_(torch.tensor([*head, *plan.starts], dtype=torch.long))

    def read(self) -> EpochPlan:
        """The plan last written."""
        epoch, rank, world, workers, rotation, *starts = self._values.tolist()
        return EpochPlan(epoch, rank, world, workers, rotation, tuple(starts))


def _rng(*parts: object) -> random.Random:
    """A generator seeded from ``parts`` (string seeding is stable across processes/runs)."""
    return random.Random(":".join(str(p) for p in parts))


def sample_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (for per-sample augmentation)."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def shuffle_buffer(items: Iterator[T], size: int, rng: random.Random) -> Iterator[T]:
    """Approximate shuffle with a buffer of ``size`` items (deterministic given ``rng``)."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def _strided(items: Iterator[T], step: int, offset: int) -> Iterator[T]:
    return (item for i, item in enumerate(items) if i % step == offset)


class StreamingDataset(IterableDataset[Item]):
    """Batches of one source, split over ranks and workers; see the module docstring.

    Set :attr:`plan` before iterating (the :class:`StreamingLoader` does).

    Args:
        source: Manifest or shard source.
        decoder: Turns raw samples into processed ones.
        batch_size: Samples per batch (per worker).
        shuffle: Shuffle per epoch (off for evaluation).
        shuffle_buffer: Buffer size for shard sources (0: shard order shuffle only).
        seed: Base seed of all shuffling and augmentation.
        drop_last: Drop each worker's last partial batch.
        policy: What to do with samples that cannot be loaded.
        even: Truncate every slot to the smallest slot's size, so all ranks produce the same
            number of batches (needed by DDP training).
        bucket: Length-bucketed batches from windows of this many batches (see
            :mod:`omnifuse.data.bucketing`); 0: batches in stream order.
    """

    def __init__(
        self,
        source: Source,
        decoder: SampleDecoder,
        batch_size: int,
        *,
        shuffle: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        policy: BadSamplePolicy | None = None,
        even: bool = False,
        bucket: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if bucket < 0:
            raise ValueError(f"bucket={bucket} must be 0 (off) or a number of batches")
        self.source = source
        self.decoder = decoder
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.buffer = shuffle_buffer
        self.seed = seed
        self.drop_last = drop_last
        self.policy = policy or BadSamplePolicy()
        self.even = even
        self.bucket = bucket
        self._board = PlanBoard(1)
        self.plan = EpochPlan(epoch=0)

    @property
    def plan(self) -> EpochPlan:
        """The epoch to iterate: set before ``iter()`` (also seen by persistent workers)."""
        return self._board.read()

    @plan.setter
    def plan(self, plan: EpochPlan) -> None:
        if plan.num_workers != self._board.num_workers:
            # Only before workers start: a loader's worker count never changes after that.
            self._board = PlanBoard(plan.num_workers)
        self._board.write(plan)

    # --- planning (pure functions of the source sizes) -------------------------------------

    def _sample_split(self, num_slots: int) -> bool:
        """Whether slots split samples (True) rather than whole units."""
        return self.source.per_sample or len(self.source.unit_sizes) < num_slots

    def slot_counts(self, num_slots: int) -> list[int]:
        """Samples each slot reads per epoch (the same every epoch)."""
        sizes = self.source.unit_sizes
        if self._sample_split(num_slots):
            total = sum(sizes)
            counts = [total // num_slots + (s < total % num_slots) for s in range(num_slots)]
        else:
            counts = [sum(sizes[s::num_slots]) for s in range(num_slots)]
        return [min(counts)] * num_slots if self.even else counts

    def _batches(self, samples: int) -> int:
        full = samples // self.batch_size
        return full if self.drop_last else math.ceil(samples / self.batch_size)

    def num_batches(self, rank: int, world_size: int, num_workers: int) -> int:
        """Batches rank ``rank`` yields per epoch when no sample is bad."""
        counts = self.slot_counts(world_size * num_workers)
        return sum(self._batches(c) for c in counts[rank * num_workers : (rank + 1) * num_workers])

    def remaining_batches(self, plan: EpochPlan) -> int:
        """Batches left in ``plan``'s epoch after the workers' ``starts``."""
        n = plan.num_workers
        counts = self.slot_counts(plan.world_size * n)[plan.rank * n : (plan.rank + 1) * n]
        return sum(self._remaining(c, s) for c, s in zip(counts, plan.starts, strict=True))

    def _remaining(self, count: int, start: int) -> int:
        """Batches a slot of ``count`` samples has left after worker position ``start``."""
        if self.bucket == 0:
            return self._batches(max(0, count - start))
        begin, done = split_position(start, self.bucket * self.batch_size)
        # Windows hold whole batches, so the batches from ``begin`` on are those of the rest.
        return max(0, self._batches(max(0, count - begin)) - done)

    def slot_stream(self, epoch: int, slot: int, num_slots: int) -> Iterator[RawSample]:
        """The raw samples slot ``slot`` reads in ``epoch``, in order."""
        units = list(range(len(self.source.unit_sizes)))
        if self._sample_split(num_slots):
            if self.shuffle:
                _rng(self.seed, epoch).shuffle(units)  # same order in every slot: a partition
            if self.source.per_sample:
                # A fixed share, so that a worker's media cache holds the samples it reads in
                # every epoch; only the order within the share changes.
                stream = self._read([u for u in units if u % num_slots == slot])
            else:
                stream = _strided(self._read(units), num_slots, slot)
        else:
            units = units[slot::num_slots]
            if self.shuffle:
                _rng(self.seed, epoch, slot).shuffle(units)
            stream = self._read(units)
        stream = islice(stream, self.slot_counts(num_slots)[slot])
        if self.shuffle and self.buffer > 0 and not self.source.per_sample:
            stream = shuffle_buffer(stream, self.buffer, _rng(self.seed, epoch, slot, "buffer"))
        return stream

    def _read(self, units: list[int]) -> Iterator[RawSample]:
        return chain.from_iterable(self.source.unit(u) for u in units)

    # --- iteration (runs in the worker) ----------------------------------------------------

    def __iter__(self) -> Iterator[Item]:
        plan = self.plan
        info = get_worker_info()
        workers, physical = (info.num_workers, info.id) if info is not None else (1, 0)
        if workers != plan.num_workers:
            raise RuntimeError(
                f"plan is for {plan.num_workers} workers but the DataLoader runs {workers}"
            )
        logical = (physical + plan.rotation) % workers
        slot = plan.rank * workers + logical
        stream = self.slot_stream(plan.epoch, slot, plan.world_size * workers)
        if self.bucket > 0:
            yield from self._bucketed_batches_of(plan, logical, slot, stream)
        else:
            yield from self._batches_of(plan, logical, slot, stream)

    def _batches_of(
        self, plan: EpochPlan, worker: int, slot: int, stream: Iterator[RawSample]
    ) -> Iterator[Item]:
        position = plan.starts[worker]
        pending: list[LoadedSample] = []
        meta: Meta = _meta(worker, position)
        for raw in islice(stream, position, None):
            position += 1
            sample = self._load(raw, sample_seed(self.seed, plan.epoch, slot, position), meta)
            meta["seen"] += 1
            meta["position"] = position
            if sample is not None:
                pending.append(sample)
            if len(pending) == self.batch_size:
                fault_point("worker-batch")
                yield self._collate(pending), meta
                pending, meta = [], _meta(worker, position)
        if pending and not self.drop_last:
            yield self._collate(pending), meta
            meta = _meta(worker, position)
        meta["final"] = True
        yield None, meta

    def _bucketed_batches_of(
        self, plan: EpochPlan, worker: int, slot: int, stream: Iterator[RawSample]
    ) -> Iterator[Item]:
        """Like :meth:`_batches_of`, one window of ``bucket`` batches at a time, each window's
        batches grouped by sample length (:mod:`omnifuse.data.bucketing`)."""
        window = self.bucket * self.batch_size
        start, done = split_position(plan.starts[worker], window)
        meta: Meta = _meta(worker, start)
        for chunk in windows(islice(stream, start, None), window):
            loaded = self._load_window(chunk, plan.epoch, slot, start, meta)
            if done:  # a resumed window: its samples were counted before the checkpoint
                meta = _meta(worker, start)
            batches = self._window_batches(loaded, plan.epoch, slot, start)
            for index, members in enumerate(batches):
                # After a window's last batch the position is the next window's start, so a
                # resume there decodes nothing twice.
                last = index == len(batches) - 1
                meta["position"] = start + len(chunk) if last else start + index + 1
                if index >= done:
                    yield self._collate([loaded[i] for i in members]), meta
                    meta = _meta(worker, meta["position"])
            start, done = start + len(chunk), 0
            meta["position"] = start
        meta["final"] = True
        yield None, meta

    def _load_window(
        self, chunk: list[RawSample], epoch: int, slot: int, start: int, meta: Meta
    ) -> list[LoadedSample]:
        """Decode one window (stream positions ``start + 1 ...`` seed augmentation, as in
        :meth:`_batches_of`); bad samples are counted in ``meta`` and left out."""
        loaded = []
        for offset, raw in enumerate(chunk):
            sample = self._load(raw, sample_seed(self.seed, epoch, slot, start + offset + 1), meta)
            meta["seen"] += 1
            if sample is not None:
                loaded.append(sample)
        return loaded

    def _window_batches(
        self, loaded: list[LoadedSample], epoch: int, slot: int, start: int
    ) -> list[list[int]]:
        """The window's batches (indices into ``loaded``), in yield order."""
        rng = _rng(self.seed, epoch, slot, "bucket", start) if self.shuffle else None
        lengths = [sample_length(s.inputs, self.decoder.processors) for s in loaded]
        batches = bucket_batches(lengths, self.batch_size, rng)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def _load(self, raw: RawSample, seed: int, meta: Meta) -> LoadedSample | None:
        try:
            return self.decoder.decode(raw, seed)
        except MediaError as err:
            if self.policy.mode == "error":
                raise
            log.warning("skipping bad sample %r: %s", raw.id, err)
            meta["bad"] += 1
            meta["examples"].append(str(err))
            return None

    def _collate(self, samples: list[LoadedSample]) -> Batch:
        return collate_samples(samples, self.decoder.processors, self.decoder.fields)


def _meta(worker: int, position: int) -> Meta:
    return {"worker": worker, "position": position, "seen": 0, "bad": 0, "examples": []}


def _share_media_cache(worker_id: int) -> None:
    """Worker start-up: limit this worker's media cache to its share of ``data.cache_mb``
    (each worker reads a fixed ``1 / num_workers`` of a manifest's samples)."""
    info = get_worker_info()
    if info is not None:
        MEDIA_CACHE.limit_bytes //= info.num_workers


def _identity(item: Any) -> Any:
    """No collation: workers already yield whole batches."""
    return item


class StreamingLoader:
    """An iterable of :class:`Batch` es over a :class:`StreamingDataset`, with exact mid-epoch
    resume through ``state_dict()``/``load_state_dict()``.

    Each ``iter()`` runs one epoch (the next one, or the rest of a loaded one). ``len()`` is the
    number of batches of a full epoch on this rank (Lightning then skips its one-batch prefetch,
    so the state it checkpoints is exactly the batches it trained on). Bad samples skipped under
    ``on_bad_sample=skip`` are counted in :attr:`bad_samples` and logged.

    The dataset is kept as :attr:`stream` (not ``dataset``: Lightning would then warn that an
    ``IterableDataset`` with a length may duplicate data across workers, which this one does not).

    Args:
        dataset: The dataset to iterate.
        num_workers: DataLoader worker processes (0: load in this process).
        rank: This process's rank; default from ``torch.distributed`` when initialised.
        world_size: Number of ranks; default likewise.
        pin_memory: Pin batches (for GPU training).
    """

    def __init__(
        self,
        dataset: StreamingDataset,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.stream = dataset
        self.num_workers = num_workers
        self._rank, self._world = rank, world_size
        self.pin_memory = pin_memory
        self._torch_loader: DataLoader[Item] | None = None
        self.epoch = 0
        self._started = self._finished = False
        self._positions = [0] * self.workers
        self._next_worker = 0
        self._pending: dict[str, Any] | None = None
        self.seen_samples = self.bad_samples = self.batches = 0
        self.bad_examples: list[str] = []

    @property
    def workers(self) -> int:
        """Logical workers (at least 1)."""
        return max(1, self.num_workers)

    def _ranks(self) -> tuple[int, int]:
        return (
            distributed.rank() if self._rank is None else self._rank,
            distributed.world_size() if self._world is None else self._world,
        )

    def __len__(self) -> int:
        rank, world = self._ranks()
        return self.stream.num_batches(rank, world, self.workers)

    def _data_loader(self, epoch: int) -> DataLoader[Item]:
        """The torch loader: one per epoch in-process; with workers, one for the loader's life,
        its worker processes kept between epochs (``persistent_workers``), so each keeps its
        share of the media cache and is not started again every epoch."""
        if self._torch_loader is not None:
            return self._torch_loader
        loader = DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_identity,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_share_media_cache if self.num_workers > 0 else None,
            # A private generator: creating workers must not consume the global torch RNG.
            generator=torch.Generator().manual_seed(sample_seed(self.stream.seed, epoch)),
        )
        if self.num_workers > 0:
            self._torch_loader = loader
        return loader

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the loader is garbage-collected);
        the next ``iter()`` starts new ones."""
        self._torch_loader = None

    def __iter__(self) -> Iterator[Batch]:
        plan = self._begin()
        self.stream.plan = plan  # before iter(): (re)started workers read it from shared memory
        try:
            batches = iter(self._data_loader(plan.epoch))  # starts or resumes the workers
            fault_point("worker-start")
            yield from self._epoch(batches)
        except Exception:
            # A dead worker leaves the torch loader unusable: the next epoch starts new ones.
            self.close()
            raise
        self._finished = True
        self.stream.policy.check(self.bad_samples, self.seen_samples, self.bad_examples, True)
        if self.bad_samples:
            log.warning(
                "epoch %d: skipped %d bad samples of %d seen",
                plan.epoch,
                self.bad_samples,
                self.seen_samples,
            )

    def _epoch(self, batches: Iterator[Item]) -> Iterator[Batch]:
        """The batches of one epoch, accounted for in the loader's state."""
        for batch, meta in batches:
            self._account(meta)
            if batch is not None:
                self.batches += 1
                self._next_worker = (meta["worker"] + 1) % self.workers
                yield batch

    def _begin(self) -> EpochPlan:
        """The plan of the epoch ``iter()`` starts: the rest of a loaded one, or the next one."""
        rank, world = self._ranks()
        plan = self._take_pending(rank, world)
        if plan is None:
            if self._started:
                self.epoch += 1
            self.seen_samples = self.bad_samples = self.batches = 0
            self.bad_examples = []
            plan = EpochPlan(self.epoch, rank, world, self.workers, 0, (0,) * self.workers)
        self._started, self._finished = True, False
        self._positions, self._next_worker = list(plan.starts), plan.rotation
        return plan

    def _take_pending(self, rank: int, world: int) -> EpochPlan | None:
        """The plan that continues a loaded state, or None if that epoch has nothing left."""
        if self._pending is None:
            return None
        state, self._pending = self._pending, None
        self.epoch, self._started = state["epoch"], True
        starts = tuple(state["positions"])
        plan = EpochPlan(self.epoch, rank, world, self.workers, state["next_worker"], starts)
        if state["finished"] or self.stream.remaining_batches(plan) == 0:
            return None
        self.seen_samples, self.bad_samples = state["seen"], state["bad"]
        self.batches = state["batches"]
        return plan

    def _account(self, meta: Meta) -> None:
        self._positions[meta["worker"]] = meta["position"]
        self.seen_samples += meta["seen"]
        self.bad_samples += meta["bad"]
        room = MAX_EXAMPLES - len(self.bad_examples)
        self.bad_examples.extend(meta["examples"][: max(0, room)])
        self.stream.policy.check(self.bad_samples, self.seen_samples, self.bad_examples)

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: enough to resume exactly (same seed, workers and ranks)."""
        if self._pending is not None:
            return dict(self._pending)
        world = self._ranks()[1]
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "finished": self._finished,
            "positions": list(self._positions),
            "next_worker": self._next_worker,
            "num_workers": self.workers,
            "world_size": world,
            "seed": self.stream.seed,
            "seen": self.seen_samples,
            "bad": self.bad_samples,
            "batches": self.batches,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the next ``iter()`` continues that epoch.

        Raises:
            ValueError: the state was saved with other workers, ranks or seed (the sample order
                would differ), or is not a loader state.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"not a StreamingLoader state (version {state.get('version')!r})")
        _, world = self._ranks()
        for key, mine in (
            ("num_workers", self.workers),
            ("world_size", world),
            ("seed", self.stream.seed),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"cannot resume: the state was saved with {key}={state[key]} but this loader "
                    f"has {key}={mine}; use the same value to continue the same sample order"
                )
        self._pending = dict(state)
