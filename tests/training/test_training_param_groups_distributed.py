"""Per-prefix LRs, freezing and a LoRA adapter under 2-process DDP (``omnifuse train``, gloo)
and under FSDP2 on a 2-rank CPU mesh: only the intended parameters change, each optimiser group
has its configured LR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from fsdp2_param_groups_worker import param_groups_step  # light: spawned ranks import only it
from safetensors.torch import load_file

from omnifuse.config import load_config
from omnifuse.models import build_model
from omnifuse.training.optim import PARAMS_FILE
from rank_helpers import free_port, run_ranks

SCRIPT = Path(__file__).with_name("training_script.py")
TOLERANCE = 1e-5
"""Sharded vs unsharded weights after 2 AdamW steps (summation order only; see
test_training_ddp.py, whose bounds these are)."""
NULL_GRAD_TOLERANCE = 3e-3
"""Attention key biases: exactly-zero gradients turned into Adam noise (see test_training_ddp)."""

LORA = {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}
PARAM_GROUPS = [
    {"prefix": "encoders.text", "freeze": True},
    {"prefix": "fusion", "lr": 2e-3},
    {"prefix": "heads.shape", "lr": 5e-3},
]
LRS = {"fusion": 2e-3, "heads.shape": 5e-3}


def expected_lr(name: str) -> float:
    return next((lr for p, lr in LRS.items() if name.startswith(p + ".")), 1e-3)


def test_ddp_honours_param_groups_and_lora(run_yaml: Callable[..., Path], tmp_path: Path) -> None:
    path = run_yaml(
        max_steps=3,
        lr=1e-3,
        schedule={"type": "constant", "warmup_steps": 0},
        param_groups=PARAM_GROUPS,
        multitask={"tasks_per_step": "all"},
        checkpoint={"every_n_steps": 3},
        strategy="ddp",
        devices=2,
        accelerator="cpu",
    )
    data = yaml.safe_load(path.read_text())
    data["model"]["adapters"] = {"encoders.image": LORA}
    path.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(SCRIPT), str(path), str(run_dir), "0", "0", "-"]
    result = subprocess.run(args, env=env, capture_output=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr.decode()[-3000:]

    torch.manual_seed(0)  # what train() seeds before building: the same initial weights
    initial = build_model(load_config(path).model)[0].state_dict()
    final = load_file(run_dir / "model" / "model.safetensors")
    assert final.keys() == initial.keys()
    same = {n for n in final if torch.equal(final[n], initial[n])}
    frozen = {n for n in final if n.startswith("encoders.text.")}
    frozen |= {n for n in final if n.startswith("encoders.image.") and "lora_" not in n}
    assert frozen <= same  # the frozen text tower and the LoRA base weights: bit for bit
    lora_b = {n for n in final if "lora_B" in n}
    assert len(lora_b) == 4 and not lora_b & same
    assert (
        not {n for n in final if n.startswith(("fusion.", "heads.shape.")) and "norm" not in n}
        <= same
    )

    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    groups = state["optimizer_states"][0]["param_groups"]
    grouped = [n for g in groups for n in g["param_names"]]
    assert not set(grouped) & frozen and set(grouped) >= lora_b
    for group in groups:
        assert {expected_lr(n) for n in group["param_names"]} == {group["lr"]}, group["name"]
    counts = json.loads((run_dir / PARAMS_FILE).read_text())
    assert counts["trainable"] == sum(initial[n].numel() for n in grouped)
    assert counts["components"]["encoders.text"]["trainable"] == 0


def test_fsdp2_honours_param_groups_and_lora() -> None:
    run_ranks(param_groups_step, (free_port(), TOLERANCE, NULL_GRAD_TOLERANCE))
