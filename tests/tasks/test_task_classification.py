"""``classification`` task: cross-entropy over labelled samples, accuracy, overfitting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from task_helpers import build, check_contract, make_batch, overfit


def test_contract_and_ignored_labels(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["classification"])
    task = tasks["classification"]
    batch = make_batch(processors, media, size=3)
    model.eval()
    out = task(model, batch)
    check_contract(out)
    assert set(out) == {"loss", "accuracy"}
    batch["targets"]["label"] = torch.tensor([-100, 1, -100])
    one = task(model, batch)
    batch["targets"]["label"] = torch.tensor([-100, -100, -100])
    none = task(model, batch)
    assert float(none["loss"].detach()) == 0.0 and torch.isfinite(none["loss"])
    # The loss of one labelled sample is its own cross-entropy, not diluted by the others.
    assert float(one["loss"].detach()) > 0.0 and float(one["accuracy"]) in (0.0, 1.0)


def test_label_outside_the_head_is_an_error(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["classification"])
    batch = make_batch(processors, media, size=2)
    batch["targets"]["label"] = torch.tensor([0, 7])
    with pytest.raises(ValueError, match=r"holds class 7, but head 'classify' has 4 classes"):
        tasks["classification"](model, batch)


def test_overfits_a_fixed_batch(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["classification"])
    batch = make_batch(processors, media)
    first, last = overfit(tasks["classification"], model, batch, steps=40, lr=3e-3)
    assert last < first / 10
    model.eval()
    assert float(tasks["classification"](model, batch)["accuracy"]) == 1.0


def test_head_on_one_modality_reads_only_it(media: dict[str, Callable[..., Path]]) -> None:
    head = "model.heads.text_cls={type: classification, num_classes: 4, source: text}"
    model, processors, tasks = build([], [head, "tasks.t={head: text_cls}"])
    assert tasks["t"].inputs == ("text",)
    batch = make_batch(processors, media, ("image", "text"), size=2)
    tasks["t"](model, batch)["loss"].backward()
    assert all(p.grad is None for p in model.fusion.parameters())
    assert all(p.grad is None for p in model.encoders["image"].parameters())
