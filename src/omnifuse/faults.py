"""Fault-injection points for the reliability campaign (issue 14): SIGKILL at a named moment.

``OMNIFUSE_FAULT=<moment>:<n>`` makes the process SIGKILL itself the ``n``-th time (1-based) it
reaches ``moment``; unset (the normal case) every :func:`fault_point` only looks it up and
returns. The moments, and where they are called:

* ``step``: inside a training step, after the backward pass and before the optimiser step
  (:class:`~omnifuse.training.callbacks.FaultPoints`, Lightning's ``on_before_optimizer_step``);
* ``checkpoint-write``: inside :func:`~omnifuse.training.checkpoint.atomic_torch_save`, with the
  temporary file partly written (``torch.save`` returned, Python's buffer not yet flushed);
* ``validation``: inside a validation batch (``on_validation_batch_end``);
* ``worker-start``: in the training process right after a ``DataLoader`` started its worker
  processes, before the first batch arrived (:class:`~omnifuse.data.streaming.StreamingLoader`);
* ``worker-batch``: inside a data-loader worker, after it produced a batch: the *worker* kills
  itself (a worker lost to the OOM killer), not the training process (with
  ``data.num_workers: 0`` the batches are made in the training process, which then dies).

``OMNIFUSE_FAULT_LOG=<file>`` records every arrival (``<pid> <moment>`` lines), so that the
campaign can count, from an uninterrupted run, how often each moment is reached and draw ``n``
among the arrivals that exist. Both variables unset, every point costs two environment lookups.

The count is per process. Workers are forked from the training process, so a ``worker-batch``
count starts afresh in every worker of every epoch: ``worker-batch:3`` kills each worker at its
third batch, which is what a test of a dying worker needs. The scripts that use this are
``scripts/reliability_campaign.py`` and ``tests/reliability/``; nothing else sets the variable.
This module sits in the lowest layer (no imports from omnifuse) so that the data loader can
call it too.
"""

from __future__ import annotations

import os
import signal
from typing import Final

FAULT_ENV: Final = "OMNIFUSE_FAULT"
FAULT_LOG_ENV: Final = "OMNIFUSE_FAULT_LOG"
MOMENTS: Final = ("step", "checkpoint-write", "validation", "worker-start", "worker-batch")

_counts: dict[str, int] = {}


def parse_fault(value: str) -> tuple[str, int]:
    """``"<moment>:<n>"`` -> ``(moment, n)``.

    Raises:
        ValueError: an unknown moment or a count that is not a positive integer; the message
            names the variable, the value and the valid moments.
    """
    moment, _, count = value.partition(":")
    if moment not in MOMENTS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"{FAULT_ENV}={value!r}: expected <moment>:<n> with n >= 1 and moment one of "
            f"{', '.join(MOMENTS)}"
        )
    return moment, int(count)


def fault_point(moment: str) -> None:
    """SIGKILL this process if ``OMNIFUSE_FAULT`` targets this arrival at ``moment``; append
    ``<pid> <moment>`` to the file ``OMNIFUSE_FAULT_LOG`` names, if set."""
    log = os.environ.get(FAULT_LOG_ENV)
    if log:
        with open(log, "a") as handle:  # one short O_APPEND write: lines never interleave
            handle.write(f"{os.getpid()} {moment}\n")
    value = os.environ.get(FAULT_ENV)
    if not value:
        return
    target, n = parse_fault(value)
    if target != moment:
        return
    _counts[moment] = _counts.get(moment, 0) + 1
    if _counts[moment] == n:
        os.kill(os.getpid(), signal.SIGKILL)
