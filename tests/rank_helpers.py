"""Spawning CPU ranks (gloo) for the distributed tests: a free rendezvous port and a bounded
join, so a hang fails the test instead of blocking CI."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the ranks' rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(
    fn: Callable[..., None], args: tuple[Any, ...], nprocs: int = 2, deadline_s: float = 600.0
) -> None:
    """``fn(rank, *args)`` in ``nprocs`` spawned processes; a rank's exception is raised here with
    its traceback, and ranks still running after ``deadline_s`` are killed and the test fails."""
    context = mp.start_processes(fn, args=args, nprocs=nprocs, start_method="spawn", join=False)
    deadline = time.monotonic() + deadline_s
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            name = getattr(fn, "__name__", repr(fn))
            pytest.fail(f"{name}: ranks still running after {deadline_s:.0f} s")
