"""Fine-tuning parameter groups (freeze, head LR, layer-wise decay) and LR schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from omnifuse import create_model
from omnifuse.config import ConfigError
from omnifuse.config.training import ScheduleConfig, TrainingConfig
from omnifuse.training import optim
from omnifuse.training.optim import (
    apply_freeze,
    build_optimizer,
    clean_name,
    format_counts,
    layer_ids,
    matches,
    named_trainables,
    param_groups,
    parameter_counts,
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
    # most runs have no task parameters: the head LR's "tasks" prefix matching none is fine
    no_tasks = [(n, p) for n, p in tiny_named if not n.startswith("tasks.")]
    apply_freeze(no_tasks, TrainingConfig(head_lr=5e-4))
    groups = param_groups(no_tasks, TrainingConfig(head_lr=5e-4))
    assert group_of(groups, "heads.embed.proj.weight")["lr"] == 5e-4


def test_param_groups_set_lr_decay_and_freezing_per_prefix(
    tiny_named: list[tuple[str, nn.Parameter]],
) -> None:
    config = TrainingConfig(
        lr=1e-3,
        weight_decay=0.01,
        param_groups=[
            {"prefix": "encoders.image", "lr": 1e-5},
            {"prefix": "encoders.image.blocks.layers.0.attn", "lr": 2e-5, "weight_decay": 0.5},
            {"prefix": "fusion", "freeze": True},
            {"prefix": "fusion.transformer.norm", "freeze": False},
            {"prefix": "heads", "lr": 3e-3},
        ],
    )
    named = fresh(tiny_named)
    report = apply_freeze(named, config)
    assert {n.split(".")[0] for n in report.frozen} == {"fusion"}
    assert "fusion.transformer.norm.weight" not in report.frozen  # the deeper prefix wins
    groups = param_groups(named, config)
    assert group_of(groups, "encoders.image.patch_embed.weight")["lr"] == 1e-5
    attn = group_of(groups, "encoders.image.blocks.layers.0.attn.q_proj.weight")
    assert (attn["lr"], attn["weight_decay"]) == (2e-5, 0.5)  # field by field, most specific
    assert group_of(groups, "encoders.image.blocks.layers.0.attn.q_proj.bias")["weight_decay"] == 0
    assert group_of(groups, "encoders.image.blocks.layers.0.mlp.fc1.weight")["lr"] == 1e-5
    assert group_of(groups, "encoders.text.transformer.norm.weight")["lr"] == 1e-3
    assert group_of(groups, "heads.classify.net.1.weight")["lr"] == 3e-3
    assert group_of(groups, "tasks.itc.log_scale")["lr"] == 1e-3
    grouped = {n for g in groups for n in g["param_names"]}
    assert grouped == {n for n, p in named if p.requires_grad}
    assert "fusion.transformer.norm.weight" in grouped
    assert not any(n.startswith("fusion.transformer.layers") for n in grouped)
    optimizer = build_optimizer(named, config)
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in groups]


def test_shorthands_are_param_groups(tiny_named: list[tuple[str, nn.Parameter]]) -> None:
    old = TrainingConfig(lr=1e-3, head_lr=5e-4, freeze=["fusion"])
    new = TrainingConfig(
        lr=1e-3,
        param_groups=[
            {"prefix": "heads", "lr": 5e-4},
            {"prefix": "tasks", "lr": 5e-4},
            {"prefix": "fusion", "freeze": True},
        ],
    )
    results = []
    for config in (old, new):
        named = fresh(tiny_named)
        apply_freeze(named, config)
        results.append(
            [(g["lr"], g["weight_decay"], g["param_names"]) for g in param_groups(named, config)]
        )
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"freeze": ["fusion"], "param_groups": [{"prefix": "fusion", "freeze": False}]},
            r"training\.param_groups\[0\]\.prefix sets freeze of prefix 'fusion' again "
            r"\(already set by training\.freeze\); set it once",
        ),
        (
            {"head_lr": 1e-3, "param_groups": [{"prefix": "heads", "lr": 1e-2}]},
            r"sets lr of prefix 'heads' again \(already set by training\.head_lr\)",
        ),
        ({"param_groups": [{"prefix": "fusion"}]}, "prefix 'fusion': set lr, freeze or weight"),
        (
            {"param_groups": [{"prefix": "fusion", "freeze": True, "lr": 1.0}]},
            "freeze: true with lr/weight_decay",
        ),
        ({"param_groups": [{"prefix": "fusion", "lr": 0}]}, "greater than 0"),
    ],
)
def test_param_group_config_errors(fields: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TrainingConfig(**fields)


def test_unknown_param_group_prefix_names_the_entry(
    tiny_named: list[tuple[str, nn.Parameter]],
) -> None:
    config = TrainingConfig(
        param_groups=[{"prefix": "heads", "lr": 1.0}, {"prefix": "fuse", "lr": 1.0}]
    )
    with pytest.raises(
        ConfigError,
        match=r"training\.param_groups\[1\]\.prefix: 'fuse' matches no parameter; valid "
        r"prefixes include: encoders\.image, encoders\.text, fusion\.",
    ):
        param_groups(tiny_named, config)


def test_wrapper_segments_do_not_hide_prefixes() -> None:
    fsdp, ckpt = "_fsdp_wrapped_module", "_checkpoint_wrapped_module"
    name = f"{fsdp}.encoders.image.{fsdp}.blocks.{ckpt}.w"
    assert clean_name(name) == "encoders.image.blocks.w"
    assert clean_name("heads.lm.module_list.w") == "heads.lm.module_list.w"
    a = nn.Parameter(torch.zeros(2, 2))
    groups = param_groups(
        [(name, a)], TrainingConfig(param_groups=[{"prefix": "encoders.image", "lr": 0.5}])
    )
    assert groups[0]["lr"] == 0.5 and groups[0]["param_names"] == [name]


def test_parameter_counts_per_component_and_adapter() -> None:
    weight = lambda *shape: nn.Parameter(torch.zeros(*shape))  # noqa: E731
    frozen = weight(4, 4)
    frozen.requires_grad_(False)
    named = [
        ("encoders.image.blocks.q_proj.base_layer.weight", frozen),
        ("encoders.image.blocks.q_proj.lora_A.default.weight", weight(2, 4)),
        ("encoders.image.blocks.q_proj.lora_B.default.weight", weight(4, 2)),
        ("fusion.norm.weight", weight(4)),
        ("heads.lm.projector.weight", weight(3, 4)),
        ("tasks.itc.log_scale", weight(1)),
    ]
    counts = parameter_counts(named)
    assert counts["total"] == 16 + 8 + 8 + 4 + 12 + 1
    assert counts["trainable"] == counts["total"] - 16
    assert counts["adapter"] == {"total": 16, "trainable": 16}
    assert counts["components"] == {
        "encoders.image": {"total": 32, "trainable": 16},
        "fusion": {"total": 4, "trainable": 4},
        "heads.lm": {"total": 12, "trainable": 12},
        "tasks.itc": {"total": 1, "trainable": 1},
    }
    assert format_counts(counts).startswith(
        "parameters: 49 total, 33 trainable (67.35%); adapter 16; encoders.image 16/32; "
    )


def test_report_prints_one_line_and_writes_params_json(
    tiny_named: list[tuple[str, nn.Parameter]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed: list[str] = []
    monkeypatch.setattr(optim, "rank_zero_info", printed.append)
    counts = optim.report_parameters(tiny_named, tmp_path)
    assert printed == [format_counts(counts)]
    assert json.loads((tmp_path / optim.PARAMS_FILE).read_text()) == counts
    assert counts["total"] == sum(p.numel() for _, p in tiny_named)
    assert set(counts["components"]) == {
        "encoders.image",
        "encoders.text",
        "fusion",
        "heads.classify",
        "heads.embed",
        "tasks.itc",
    }


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
