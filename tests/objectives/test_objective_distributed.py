"""Gathered contrastive loss on 2 gloo processes equals the single-process full-batch loss."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from omnifuse.objectives import ContrastiveLoss, gather_features
from rank_helpers import free_port, run_ranks

WORLD = 2


def _run_rank(
    a: torch.Tensor, b: torch.Tensor, rows: slice, ids: torch.Tensor | None
) -> dict[str, Any]:
    local_a = a[rows].clone().requires_grad_(True)
    local_b = b[rows].clone().requires_grad_(True)
    objective = ContrastiveLoss(temperature=0.1)
    out = objective(local_a, local_b, None if ids is None else ids[rows])
    out.loss.backward()
    return {
        "loss": out.loss.detach(),
        "grad_a": local_a.grad,
        "grad_b": local_b.grad,
        "grad_scale": objective.logit_scale.log_scale.grad,
        "columns": out.logits_ab.shape[1],
    }


def _worker(rank: int, port: int, out_dir: str, a: torch.Tensor, b: torch.Tensor) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        half = a.shape[0] // WORLD
        results = {"even": _run_rank(a, b, slice(rank * half, (rank + 1) * half), None)}
        # Uneven split (3 + 5 rows) with repeated ids, to exercise padding and gathered masks.
        uneven = slice(0, 3) if rank == 0 else slice(3, 8)
        ids = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5])
        results["uneven"] = _run_rank(a, b, uneven, ids)
        results["gathered_ids"] = gather_features(ids[uneven])
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_gather_matches_full_batch(tmp_path: Path) -> None:
    a, b = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    run_ranks(_worker, (free_port(), str(tmp_path), a, b), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    full_a, full_b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    objective = ContrastiveLoss(temperature=0.1)
    full = objective(full_a, full_b)
    full.loss.backward()

    even = [r["even"] for r in ranks]
    assert all(r["columns"] == 8 for r in even)  # each rank saw all 8 negatives
    mean_loss = sum(r["loss"] for r in even) / WORLD
    torch.testing.assert_close(mean_loss, full.loss.detach(), atol=1e-6, rtol=0)
    # Documented scaling: a rank's local-feature gradient is WORLD x the full-batch gradient
    # (DDP's averaging undoes it); the temperature's gradient averages to the full one.
    for rank, result in enumerate(even):
        rows = slice(rank * 4, (rank + 1) * 4)
        torch.testing.assert_close(result["grad_a"], WORLD * full_a.grad[rows], atol=1e-6, rtol=0)
        torch.testing.assert_close(result["grad_b"], WORLD * full_b.grad[rows], atol=1e-6, rtol=0)
    mean_scale_grad = sum(r["grad_scale"] for r in even) / WORLD
    torch.testing.assert_close(
        mean_scale_grad, objective.logit_scale.log_scale.grad, atol=1e-6, rtol=0
    )

    ids = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5])
    full_ids = objective(a, b, sample_ids=ids).loss
    weighted = (3 * ranks[0]["uneven"]["loss"] + 5 * ranks[1]["uneven"]["loss"]) / 8
    torch.testing.assert_close(weighted, full_ids.detach(), atol=1e-6, rtol=0)
    assert torch.equal(ranks[0]["gathered_ids"], ids)
