"""The FSDP2 rank of ``test_training_ddp.py`` (kept light: spawned ranks import only this)."""

from __future__ import annotations

import copy
import os

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from omnifuse import create_model
from omnifuse.tasks.classification import ClassificationTask
from omnifuse.training.distributed import shard_fsdp2


def batches(rank: int, processors: dict) -> tuple[dict, dict]:
    """The whole batch of 4 (image + text, seeded) and rank ``rank``'s half of it."""
    gen = torch.Generator().manual_seed(3)
    inputs = {
        "image": {"pixel_values": torch.randn(4, 3, 32, 32, generator=gen)},
        "text": processors["text"](["a red circle", "blue", "a green square", "x"]),
    }
    batch = {
        "inputs": inputs,
        "targets": {"label": torch.tensor([0, 1, 2, 3])},
        "ids": list("abcd"),
    }
    half = {
        "inputs": {m: {k: v[rank::2] for k, v in t.items()} for m, t in inputs.items()},
        "targets": {"label": batch["targets"]["label"][rank::2]},
        "ids": batch["ids"][rank::2],
    }
    return batch, half


def fsdp2_step(rank: int, port: int, tolerance: float, null_grad_tolerance: float) -> None:
    """Rank ``rank`` of 2: one AdamW step of a sharded model on half the batch must equal one
    step of an unsharded copy on the whole batch (FSDP2 averages gradients over the ranks)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        overrides = ["model.encoders.audio=null", "model.encoders.video=null"]
        model, processors = create_model("tiny", overrides)
        reference = copy.deepcopy(model)
        task = ClassificationTask("cls", 1.0, ("image", "text"), "classify")
        batch, half = batches(rank, processors)
        shard_fsdp2(model, init_device_mesh("cpu", (2,)))
        for net, data in ((model, half), (reference, batch)):
            optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
            task(net, data)["loss"].backward()
            optimizer.step()
        sharded = 0
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            full = p.full_tensor()
            bound = null_grad_tolerance if name.endswith("k_proj.bias") else tolerance
            assert float((full - q).abs().max()) < bound, name
            sharded += p.to_local().numel() < full.numel()
        assert sharded > 0  # the parameters really were split between the ranks
        # both ranks leave together: destroying the group while the peer is still in a
        # collective aborts gloo ("terminate called without an active exception") under load
        dist.barrier()
    finally:
        dist.destroy_process_group()
