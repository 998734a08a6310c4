"""The FSDP2 rank of ``test_training_param_groups_distributed.py`` (spawned ranks import only
this): per-prefix freezing, LRs and a LoRA adapter on a model sharded with ``fully_shard``."""

from __future__ import annotations

import copy
import os

import torch
import torch.distributed as dist
from fsdp2_worker import batches  # light: the ranks import only the two workers
from torch.distributed.device_mesh import init_device_mesh

from omnifuse import create_model
from omnifuse.config.training import TrainingConfig
from omnifuse.tasks.classification import ClassificationTask
from omnifuse.training.distributed import shard_fsdp2
from omnifuse.training.optim import apply_freeze, build_optimizer, named_trainables

OVERRIDES = [
    "model.encoders.audio=null",
    "model.encoders.video=null",
    "model.adapters={encoders.image: {r: 2, alpha: 4, target_modules: [q_proj, v_proj]}}",
]
CONFIG = TrainingConfig(
    lr=1e-3,
    param_groups=[
        {"prefix": "encoders.text", "freeze": True},
        {"prefix": "fusion", "lr": 2e-3},
        {"prefix": "heads.classify", "lr": 5e-3},
    ],
)
EXPECTED_LR = {"fusion": 2e-3, "heads.classify": 5e-3}
"""LR by prefix; everything else trainable is at CONFIG.lr."""


def expected_lr(name: str) -> float:
    return next((lr for p, lr in EXPECTED_LR.items() if name.startswith(p + ".")), CONFIG.lr)


def param_groups_step(rank: int, port: int, tolerance: float, null_grad_tolerance: float) -> None:
    """Two AdamW steps of a sharded model on half the batch: frozen parameters stay bit-for-bit,
    the LoRA base weights too, the adapter moves, every group has its configured LR, and the
    result equals the same steps of an unsharded copy on the whole batch."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model, processors = create_model("tiny", OVERRIDES)
        apply_freeze(named_trainables([("", model)]), CONFIG)
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        image = {n for n, _ in model.named_parameters() if n.startswith("encoders.image.")}
        text = {n for n, _ in model.named_parameters() if n.startswith("encoders.text.")}
        assert frozen == text | {n for n in image if "lora_" not in n}
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        reference = copy.deepcopy(model)
        task = ClassificationTask("cls", 1.0, ("image", "text"), "classify")
        batch, half = batches(rank, processors)
        shard_fsdp2(model, init_device_mesh("cpu", (2,)))
        for net, data in ((model, half), (reference, batch)):
            optimizer = build_optimizer(named_trainables([("", net)]), CONFIG)
            for group in optimizer.param_groups:
                assert all(expected_lr(n) == group["lr"] for n in group["param_names"]), group
            for _ in range(2):  # LoRA's A has a zero gradient while B is still zero
                optimizer.zero_grad()
                task(net, data)["loss"].backward()
                optimizer.step()
        # Observed with torch 2.13: the frozen text tower's embeddings and final norm (the
        # encoder unit's own parameters) stay plain tensors after fully_shard, while its frozen
        # block is sharded (unfrozen, all are DTensors, see fsdp2_worker.py). Not investigated
        # further: they are replicated on both ranks and never updated, which is checked below.
        plain = {n for n, p in model.named_parameters() if not hasattr(p, "full_tensor")}
        assert plain <= frozen and len(plain) < len(frozen), plain
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            full = (p if name in plain else p.full_tensor()).detach()
            if not p.requires_grad:  # frozen text tower and LoRA base weights: untouched
                assert torch.equal(full, initial[name]) and torch.equal(q, initial[name]), name
            elif "lora_" in name:
                assert not torch.equal(full, initial[name]), name
            bound = null_grad_tolerance if name.endswith("k_proj.bias") else tolerance
            assert float((full - q).abs().max()) < bound, name
        dist.barrier()  # leave together (see fsdp2_worker.py)
    finally:
        dist.destroy_process_group()
