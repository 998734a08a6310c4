"""Where this process stands in a ``torch.distributed`` run: the one place that asks.

Every other module uses these three functions instead of calling ``torch.distributed`` directly,
so "distributed" means the same everywhere: available, initialised *and* more than one process.
A one-process group counts as not distributed, so collectives (identities there) are skipped.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

__all__ = ["Group", "is_distributed", "rank", "world_size"]

Group = Any  # torch.distributed.ProcessGroup; Any keeps the signature usable without dist built


def is_distributed(group: Group | None = None) -> bool:
    """True when ``torch.distributed`` is initialised with more than one process in ``group``."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def rank(group: Group | None = None) -> int:
    """This process's rank in ``group`` (None: the default group); 0 outside a distributed run."""
    return dist.get_rank(group) if is_distributed(group) else 0


def world_size(group: Group | None = None) -> int:
    """Number of processes in ``group`` (None: the default group); 1 outside a distributed run."""
    return dist.get_world_size(group) if is_distributed(group) else 1
