"""Fine-tuning parameter groups (freeze, head LR, layer-wise decay) and LR schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from omnifuse import create_model
from omnifuse.config import ConfigError
from omnifuse.config.training import ScheduleConfig, TrainingConfig
from omnifuse.training.optim import (
    apply_freeze,
    build_optimizer,
    layer_ids,
    matches,
    named_trainables,
    param_groups,
)
from omnifuse.training.schedule import LRMultiplier, build_scheduler


@pytest.fixture(scope="module")
def tiny_named() -> list[tuple[str, nn.Parameter]]:
    model, _ = create_model("tiny", ["model.encoders.audio=null", "model.encoders.video=null"])
    tasks = nn.ModuleDict({"itc": nn.Module()})
    tasks["itc"].log_scale = nn.Parameter(torch.zeros(()))
    return named_trainables([("", model), ("tasks", tasks)])


def fresh(named: list[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter]]:
    """Detached copies, so freezing in one test does not leak into another."""
    return [(n, nn.Parameter(p.detach().clone())) for n, p in named]


def test_prefix_matching_respects_dots() -> None:
    assert matches("encoders.text.embeddings.token.weight", "encoders.text")
    assert matches("encoders.text.embeddings.token.weight", "encoders.text.")
    assert not matches("encoders.textual.x", "encoders.text")
    assert matches("fusion", "fusion")


def test_freeze_and_unfreeze(tiny_named: list[tuple[str, nn.Parameter]]) -> None:
    named = fresh(tiny_named)
    report = apply_freeze(
        named,
        TrainingConfig(freeze=["encoders", "fusion"], unfreeze=["encoders.text.transformer.norm"]),
    )
    trainable = {n for n, p in named if p.requires_grad}
    assert "encoders.text.transformer.norm.weight" in trainable
    assert "heads.classify.net.1.weight" in trainable
    assert "encoders.image.patch_embed.weight" in report.frozen
    assert not any(n.startswith("fusion.") for n in trainable)
    assert report.trainable == sum(p.numel() for _, p in named if p.requires_grad)


def test_unknown_prefix_is_a_config_error(tiny_named: list[tuple[str, nn.Parameter]]) -> None:
    with pytest.raises(
        ConfigError, match=r"training\.freeze: 'encoder\.text' matches no parameter"
    ):
        apply_freeze(fresh(tiny_named), TrainingConfig(freeze=["encoder.text"]))


def test_everything_frozen_is_refused(tiny_named: list[tuple[str, nn.Parameter]]) -> None:
    named = fresh(tiny_named)
    apply_freeze(named, TrainingConfig(freeze=["encoders", "fusion", "heads", "tasks"]))
    with pytest.raises(ConfigError, match="leaves no trainable parameter"):
        build_optimizer(named, TrainingConfig())


def group_of(groups: list[dict], name: str) -> dict:
    return next(g for g in groups if name in g["param_names"])


def test_head_lr_multiplier_and_no_decay(tiny_named: list[tuple[str, nn.Parameter]]) -> None:
    config = TrainingConfig(lr=1e-3, head_lr_multiplier=10.0, weight_decay=0.05)
    groups = param_groups(tiny_named, config)
    head = group_of(groups, "heads.classify.net.1.weight")
    assert head["lr"] == pytest.approx(1e-2) and head["weight_decay"] == 0.05
    assert group_of(groups, "tasks.itc.log_scale")["lr"] == pytest.approx(1e-2)
    assert group_of(groups, "tasks.itc.log_scale")["weight_decay"] == 0.0
    body = group_of(groups, "fusion.transformer.layers.0.attn.q_proj.weight")
    assert body["lr"] == pytest.approx(1e-3)
    assert group_of(groups, "fusion.transformer.norm.bias")["weight_decay"] == 0.0
    explicit = param_groups(tiny_named, TrainingConfig(lr=1e-3, head_lr=5e-4))
    assert group_of(explicit, "heads.embed.proj.weight")["lr"] == pytest.approx(5e-4)


def test_layer_ids_follow_registration_order() -> None:
    names = ["e.embed.w", "e.stack.layers.0.w", "e.stack.layers.1.w", "e.stack.norm.w", "e.out.w"]
    ids, depth = layer_ids(names)
    assert depth == 2
    assert [ids[n] for n in names] == [0, 1, 2, 3, 3]


def test_layer_decay_scales_encoder_layers(tiny_named: list[tuple[str, nn.Parameter]]) -> None:
    config = TrainingConfig(lr=1.0, layer_decay=0.5)
    groups = param_groups(tiny_named, config)
    # tiny image encoder: 1 layer -> embeddings 0.5^2, layer 0 0.5^1, final norm 0.5^0
    assert group_of(groups, "encoders.image.patch_embed.weight")["lr"] == pytest.approx(0.25)
    name = "encoders.image.blocks.layers.0.attn.q_proj.weight"
    assert group_of(groups, name)["lr"] == pytest.approx(0.5)
    assert group_of(groups, "encoders.image.blocks.norm.weight")["lr"] == pytest.approx(1.0)
    assert group_of(groups, "fusion.transformer.layers.0.attn.q_proj.weight")["lr"] == 1.0


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # warmup 2 of 10 steps: (s+1)/3 for s < 2, then the shape over the 8 remaining steps
        ("constant", [1 / 3, 2 / 3, 1.0, 1.0, 1.0]),
        ("linear", [1 / 3, 2 / 3, 1.0, 0.55, 0.1]),
        ("cosine", [1 / 3, 2 / 3, 1.0, 0.55, 0.1]),
    ],
)
def test_schedule_values(kind: str, expected: list[float]) -> None:
    multiplier = LRMultiplier(kind, warmup_steps=2, total_steps=10, min_ratio=0.1)
    got = [multiplier(s) for s in (0, 1, 2, 6, 10)]
    assert got == pytest.approx(expected, abs=1e-6)
    if kind == "cosine":
        assert multiplier(4) == pytest.approx(0.1 + 0.9 * (1 + 2**-0.5) / 2)


def test_scheduler_keeps_group_ratios() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    scheduler = build_scheduler(optimizer, ScheduleConfig(type="linear", warmup_steps=0), 4)
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([0.75, 0.075])
    with pytest.raises(ValueError, match="unknown schedule 'step'; valid choices"):
        LRMultiplier("step", 0, 1, 0.0)
