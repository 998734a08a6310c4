"""``contrastive`` task: separate encoding, learnable temperature, accuracies, overfitting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from task_helpers import build, check_contract, make_batch, overfit

from omnifuse.tasks import ContrastiveTask


def test_contract_and_metric_names(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    out = tasks["contrastive"](model, make_batch(processors, media))
    check_contract(out)
    assert set(out) == {"loss", "image_to_text_accuracy", "text_to_image_accuracy", "logit_scale"}
    assert float(out["logit_scale"]) == torch.tensor(1 / 0.07).item()


def test_temperature_is_task_state_and_learns(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    task = tasks["contrastive"]
    assert isinstance(task, ContrastiveTask)
    names = [n for n, _ in task.named_parameters()]
    assert names == ["objective.logit_scale.log_scale"]
    task(model, make_batch(processors, media))["loss"].backward()
    assert task.objective.logit_scale.log_scale.grad is not None


def test_checkpoints_from_before_the_objective_rename_load() -> None:
    _, _, tasks = build(["contrastive"])
    task = tasks["contrastive"]
    old = {"loss.logit_scale.log_scale": torch.tensor(1.5)}  # the key before it was `objective`
    task.load_state_dict(old)
    assert float(task.state_dict()["objective.logit_scale.log_scale"]) == 1.5


def test_modalities_are_encoded_without_fusion(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    tasks["contrastive"](model, make_batch(processors, media))["loss"].backward()
    assert all(p.grad is None for p in model.fusion.parameters())
    assert all(p.grad is not None for p in model.heads["image_embed"].parameters())


def test_samples_missing_a_modality_are_dropped(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    model.eval()
    batch = make_batch(processors, media)
    full = tasks["contrastive"](model, make_batch(processors, media, size=3))
    batch["inputs"]["image"]["present"] = torch.tensor([True, True, True, False])
    partial = tasks["contrastive"](model, batch)
    torch.testing.assert_close(partial["loss"], full["loss"])


def test_overfits_a_fixed_batch(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    batch = make_batch(processors, media)
    first, last = overfit(tasks["contrastive"], model, batch, steps=40, lr=3e-3)
    assert last < first / 10
    model.eval()
    out = tasks["contrastive"](model, batch)
    assert float(out["image_to_text_accuracy"]) == float(out["text_to_image_accuracy"]) == 1.0
