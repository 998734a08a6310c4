"""Gather per-rank batches so contrastive objectives see every rank's negatives.

Gradients flow through :func:`gather_features`: each rank's loss reaches the rows that came from
other ranks, and the backward pass sums those contributions onto the rank that owns the rows. So
with ``W`` equal-sized ranks the gradient a rank sees for its *local* features is ``W`` times the
gradient of the full-batch loss (the mean of the per-rank losses); DDP's gradient averaging
divides by ``W`` again, which gives parameters exactly the full-batch gradient.

When ``torch.distributed`` is not initialised, or the group holds one process, everything here is
the identity, so the same objective code runs on one device.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor

from omnifuse.distributed import Group, is_distributed, rank, world_size

# Group and is_distributed are re-exported: tasks import them from here with the gather.
__all__ = ["Group", "batch_offset", "gather_features", "gather_sizes", "is_distributed"]


def gather_sizes(size: int, device: torch.device, group: Group | None = None) -> list[int]:
    """Every rank's batch size, in rank order (``[size]`` outside a distributed run).

    Args:
        size: this rank's batch size.
        device: where the collective's buffer lives (CUDA for NCCL, CPU for gloo).
        group: process group; None for the default group.
    """
    if not is_distributed(group):
        return [size]
    local = torch.tensor([size], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(world_size(group))]
    dist.all_gather(sizes, local, group=group)
    return [int(s.item()) for s in sizes]


def batch_offset(sizes: list[int], group: Group | None = None) -> int:
    """Row where this rank's batch starts in the gathered batch: the sum of lower ranks' sizes."""
    return sum(sizes[: rank(group)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for the local rows.

    Written here rather than using ``torch.distributed.nn.functional.all_gather``: that function
    is deprecated in torch 2.13 (a FutureWarning on every call, with a private replacement), and
    its gloo backward needs all-to-all. An all-reduce of the gathered gradient works on any
    backend and handles ranks with different batch sizes.
    """

    @staticmethod
    def forward(ctx: Any, features: Tensor, sizes: list[int], group: Group | None) -> Tensor:
        ctx.group, ctx.sizes, ctx.rank = group, sizes, rank(group)
        longest = max(sizes)
        # all_gather needs equal shapes: pad to the longest batch, then drop the padding rows.
        padded = features.new_zeros((longest, *features.shape[1:]))
        padded[: features.shape[0]] = features
        buffers = [torch.empty_like(padded) for _ in range(world_size(group))]
        dist.all_gather(buffers, padded.contiguous(), group=group)
        return torch.cat([buf[:n] for buf, n in zip(buffers, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        total = grad.contiguous().clone()  # all_reduce is in-place; autograd owns ``grad``
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start : start + ctx.sizes[ctx.rank]], None, None


def gather_features(
    features: Tensor, group: Group | None = None, sizes: list[int] | None = None
) -> Tensor:
    """Concatenate every rank's ``features`` in rank order, keeping gradients.

    Every rank must call this (and, if the result is used in the loss, run backward) in the same
    step, as with any collective.

    Args:
        features: ``[B_r, ...]`` this rank's rows; ranks may hold different ``B_r``.
        group: process group; None for the default group.
        sizes: every rank's ``B_r`` from :func:`gather_sizes`, to skip exchanging them again.

    Returns:
        ``[sum_r B_r, ...]``; ``features`` itself outside a distributed run.
    """
    if not is_distributed(group):
        return features
    if sizes is None:
        sizes = gather_sizes(features.shape[0], features.device, group)
    if sizes[rank(group)] != features.shape[0]:
        raise ValueError(
            f"sizes {sizes} give this rank {sizes[rank(group)]} rows, "
            f"but features has {features.shape[0]}"
        )
    # Function.apply is untyped in torch's stubs.
    return cast(Tensor, _GatherWithGrad.apply(features, sizes, group))  # type: ignore[no-untyped-call]
