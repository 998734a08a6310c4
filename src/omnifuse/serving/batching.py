"""Dynamic batching: concurrent requests for the same task run in one forward pass.

One asyncio queue per (task, input modalities, options); a collector coroutine per queue takes
the first waiting request and every queued one, then (while traffic is concurrent) keeps adding
requests until ``max_batch`` samples or ``max_wait_ms`` have passed, and hands the merged batch
to a single worker thread. The event loop
never runs the model, and one thread means one forward pass at a time: while it runs, new
requests queue up, so batches grow exactly when the server is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from omnifuse.serving.metrics import Metrics
from omnifuse.tasks import PredictOptions

Raws = Mapping[str, Sequence[Any]]
Runner = Callable[[str, Raws, PredictOptions], list[dict[str, Any]]]
"""Runs one merged batch of a task (in the worker thread); one result per sample."""


@dataclass
class _Request:
    raws: Raws
    size: int
    future: asyncio.Future[list[dict[str, Any]]] = field(repr=False)


@dataclass(frozen=True)
class BatchSettings:
    """How requests are grouped.

    Attributes:
        max_batch: most samples in one forward pass (1 = no batching across requests).
        max_wait_ms: how long the first request of a batch waits for others.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0


class Batcher:
    """Groups concurrent requests per task and runs them with ``runner`` on one thread."""

    def __init__(self, runner: Runner, settings: BatchSettings, metrics: Metrics) -> None:
        self.runner = runner
        self.settings = settings
        self.metrics = metrics
        # Keyed by event loop too: a test client (or a restarted lifespan) may run the same
        # app on a new loop, and asyncio queues and tasks belong to the loop that made them.
        self._queues: dict[tuple[int, tuple[str, ...]], asyncio.Queue[_Request]] = {}
        self._collectors: dict[int, list[asyncio.Task[None]]] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnifuse-model")

    async def submit(self, task: str, raws: Raws, options: PredictOptions) -> list[dict[str, Any]]:
        """Queue one request (one or more samples) and wait for its predictions."""
        size = len(next(iter(raws.values())))
        key = (task, *sorted(raws), repr(options))
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._queue(key, task, options).put_nowait(_Request(raws, size, future))
        return await future

    def _queue(
        self, key: tuple[str, ...], task: str, options: PredictOptions
    ) -> asyncio.Queue[_Request]:
        loop = id(asyncio.get_running_loop())
        if (loop, key) not in self._queues:
            queue: asyncio.Queue[_Request] = asyncio.Queue()
            self._queues[loop, key] = queue
            collector = asyncio.create_task(self._collect(task, options, queue))
            self._collectors.setdefault(loop, []).append(collector)
        return self._queues[loop, key]

    async def _collect(
        self, task: str, options: PredictOptions, queue: asyncio.Queue[_Request]
    ) -> None:
        held: _Request | None = None
        busy = False
        while True:
            first = held if held is not None else await queue.get()
            batch, held = await self._gather(first, queue, wait=busy)
            # Wait for company only under concurrent traffic: a lone client would pay
            # max_wait_ms on every request for nothing.
            busy = len(batch) > 1 or held is not None or not queue.empty()
            await self._run(task, options, batch)

    async def _gather(
        self, first: _Request, queue: asyncio.Queue[_Request], wait: bool
    ) -> tuple[list[_Request], _Request | None]:
        """``first`` plus what is queued (and, if ``wait``, what arrives within
        ``max_wait_ms``), up to ``max_batch`` samples; a request that would overflow the batch
        is held for the next one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.max_wait_ms / 1000 if wait else 0.0)
        batch, size = [first], first.size
        while size < self.settings.max_batch:
            try:
                if queue.empty() and (remaining := deadline - loop.time()) > 0:
                    item = await asyncio.wait_for(queue.get(), remaining)
                else:
                    item = queue.get_nowait()
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if size + item.size > self.settings.max_batch:
                return batch, item
            batch.append(item)
            size += item.size
        return batch, None

    async def _run(self, task: str, options: PredictOptions, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        live = [r for r in batch if not r.future.done()]  # timed-out requests are dropped
        if not live:
            return
        merged = {m: [x for r in live for x in r.raws[m]] for m in live[0].raws}
        self.metrics.batch_size.labels(task=task).observe(sum(r.size for r in live))
        try:
            results = await loop.run_in_executor(self._thread, self.runner, task, merged, options)
        except Exception as err:
            if len(live) == 1:
                _settle(live[0], err)
                return
            # Retry one by one, so one bad request fails alone and not its whole batch.
            for request in live:
                await self._run(task, options, [request])
            return
        start = 0
        for request in live:
            _settle(request, results[start : start + request.size])
            start += request.size

    async def close(self) -> None:
        """Stop this loop's collectors and wait for the forward pass in progress to finish
        (the thread stays, so the app can start again)."""
        loop = id(asyncio.get_running_loop())
        collectors = self._collectors.pop(loop, [])
        for collector in collectors:
            collector.cancel()
        for collector in collectors:
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        self._queues = {k: q for k, q in self._queues.items() if k[0] != loop}
        await asyncio.get_running_loop().run_in_executor(self._thread, lambda: None)


def _settle(request: _Request, outcome: list[dict[str, Any]] | Exception) -> None:
    if request.future.done():
        return
    if isinstance(outcome, Exception):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)
