"""The one distributed helper: single-process answers; a one-process group is not distributed."""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from omnifuse.distributed import is_distributed, rank, world_size


def test_single_process_is_not_distributed() -> None:
    assert not dist.is_initialized()
    assert (is_distributed(), rank(), world_size()) == (False, 0, 1)


def test_one_process_group_is_not_distributed(tmp_path: Path) -> None:
    # Initialised but alone: collectives would be identities, so every caller skips them.
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        assert (is_distributed(), rank(), world_size()) == (False, 0, 1)
    finally:
        dist.destroy_process_group()
