"""A rank of ``test_distributed_missing.py`` (kept light: the spawned ranks import only this).

Rank 0's batch has images and texts, rank 1's only texts: the library must keep both ranks in
the same collectives (``AbsentModalities``) so that DDP and FSDP2 neither hang nor diverge.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.nn.parallel import DistributedDataParallel

from omnifuse import create_model
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks.classification import ClassificationTask
from omnifuse.training.distributed import AbsentModalities, shard_fsdp2
from omnifuse.types import Batch

STEPS = 3
TEXTS = ["a red circle", "blue", "a green square", "x"]


class TaskStep(nn.Module):
    """The model and its task behind one ``forward`` (what Lightning's DDP wrapper calls)."""

    def __init__(self, model: MultimodalModel, task: ClassificationTask) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Batch) -> Tensor:
        loss: Tensor = self.task(self.model, batch)["loss"]
        return loss


def rank_batch(rank: int, processors: dict[str, object]) -> Batch:
    """Rank 0: 4 samples with image + text; rank 1: 4 text-only samples (no image key)."""
    text = processors["text"]
    inputs = {"text": text(TEXTS)}  # type: ignore[operator]
    if rank == 0:
        inputs["image"] = {"pixel_values": torch.randn(4, 3, 32, 32)}
    labels = torch.tensor([0, 1, 2, 3]) if rank == 0 else torch.tensor([3, 2, 1, 0])
    return {"inputs": inputs, "targets": {"label": labels}, "ids": [f"{rank}{i}" for i in "abcd"]}


def full_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter as a whole local tensor (FSDP2 DTensors are gathered)."""
    out = {}
    for name, p in model.named_parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        out[name] = full.detach().clone()
    return out


def train_missing_image(rank: int, port: int, strategy: str, image: str, out: str) -> None:
    """Train the tiny image+text model ``STEPS`` AdamW steps under ``strategy`` (ddp | fsdp2)
    with ``image`` (``vit`` or an HF directory); rank 0 saves the initial and final parameters
    of both ranks to ``out`` for the test to compare."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        overrides = ["model.encoders.audio=null", "model.encoders.video=null"]
        if image != "vit":
            overrides.append(f"model.encoders.image={{type: hf, path: '{image}'}}")
        model, processors = create_model("tiny", overrides)
        task = ClassificationTask("cls", 1.0, ("image", "text"), "classify")
        initial = full_parameters(model)
        torch.manual_seed(1 + rank)  # different data per rank
        batch = rank_batch(rank, processors)
        absent = AbsentModalities(processors)
        batch["inputs"] = absent(batch["inputs"])
        step: nn.Module = TaskStep(model, task)
        if strategy == "ddp":
            # as training.run.build_strategy builds it (the unused "embed" head needs it)
            step = DistributedDataParallel(step, find_unused_parameters=True)
        else:
            shard_fsdp2(model, init_device_mesh("cpu", (2,)))
        optimizer = torch.optim.AdamW(step.parameters(), lr=1e-2)
        for _ in range(STEPS):
            optimizer.zero_grad()
            step(batch).backward()
            optimizer.step()
        final = full_parameters(model)
        gathered: list[dict[str, Tensor] | None] = [None, None]
        dist.all_gather_object(gathered, final)
        if rank == 0:
            torch.save({"initial": initial, "ranks": gathered}, out)
        dist.barrier()  # leave together (see fsdp2_worker.py)
    finally:
        dist.destroy_process_group()
