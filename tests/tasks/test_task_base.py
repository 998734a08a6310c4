"""The task interface: registry, build_tasks, input selection and batch indexing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from task_helpers import TASKS, build, check_contract, make_batch, tiny_run

from omnifuse.config import ConfigError, load_config
from omnifuse.models import build_model
from omnifuse.tasks import Task, build_tasks, index_inputs, list_tasks, task_builder
from omnifuse.tasks.base import present_rows

TYPES = {
    "classification",
    "contrastive",
    "matching",
    "mlm",
    "masked_modeling",
    "scene_grounding",
    "captioning",
    "instruction",
    "video_tokenizer",
    "video_generation",
}


def test_registry_lists_every_task_type() -> None:
    assert set(list_tasks()) == TYPES
    with pytest.raises(KeyError, match=r"unknown task type 'nope'; valid choices: captioning, "):
        task_builder("nope")


def test_build_tasks_keeps_config_order_names_and_weights() -> None:
    run = tiny_run(["mlm", "classification"], ["tasks.mlm.weight=0.25"])
    model, processors = build_model(run.model)
    tasks = build_tasks(run, model, processors)
    assert list(tasks) == ["mlm", "classification"]
    assert all(isinstance(t, Task) and t.name == n for n, t in tasks.items())
    assert tasks["mlm"].weight == 0.25 and tasks["classification"].weight == 1.0
    assert tasks["mlm"].inputs == ("text",)
    assert tasks["classification"].inputs == ("image", "text")


def test_default_inputs_per_type() -> None:
    _, _, tasks = build(list(TASKS))
    assert tasks["contrastive"].inputs == ("image", "text")
    assert tasks["masked_audio"].inputs == ("audio",)
    assert tasks["captioning"].inputs == ("image",)  # the caption itself is never an input


def test_build_tasks_checks_the_model_actually_built() -> None:
    run = tiny_run(["mlm"])
    bare = load_config("tiny")  # no mlm head
    model, processors = build_model(bare.model)
    with pytest.raises(ConfigError, match=r"tasks\.mlm\.head='mlm' is not in model\.heads"):
        build_tasks(run, model, processors)


def test_every_task_honours_the_output_contract(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(list(TASKS))
    batch = make_batch(processors, media, ("audio", "image", "text"), size=3)
    for name, task in tasks.items():
        out = task(model, batch)
        check_contract(out)
        out["loss"].backward()
        assert any(p.grad is not None for p in model.heads.parameters()), name
        model.zero_grad()


def test_select_inputs_drops_other_modalities_and_names_missing_ones(
    media: dict[str, Callable[..., Path]],
) -> None:
    model, processors, tasks = build(["mlm", "contrastive"])
    batch = make_batch(processors, media, ("image", "text"), size=2)
    assert list(tasks["mlm"].select_inputs(batch)) == ["text"]
    text_only = make_batch(processors, media, ("text",), size=2)
    with pytest.raises(ValueError, match=r"needs modalities \['image', 'text'\].*holds \['text'\]"):
        tasks["contrastive"](model, text_only)
    with pytest.raises(KeyError, match=r"needs target field 'nope'.*'caption', 'label'"):
        tasks["mlm"].target(batch, "nope")


def test_index_inputs_picks_rows_of_every_tensor() -> None:
    inputs = {"input_ids": torch.arange(6).view(3, 2), "attention_mask": torch.ones(3, 2).bool()}
    picked = index_inputs(inputs, torch.tensor([2, 0, 2]))
    assert picked["input_ids"].tolist() == [[4, 5], [0, 1], [4, 5]]
    assert picked["attention_mask"].shape == (3, 2)
    kept = index_inputs(inputs, torch.tensor([True, False, True]))
    assert kept["input_ids"].tolist() == [[0, 1], [4, 5]]


def test_present_rows_combines_presence_masks() -> None:
    inputs = {
        "image": {"pixel_values": torch.zeros(3, 1), "present": torch.tensor([True, True, False])},
        "text": {"input_ids": torch.zeros(3, 1), "present": torch.tensor([False, True, True])},
    }
    assert present_rows(inputs, ["image", "text"]).tolist() == [False, True, False]  # type: ignore[union-attr]
    assert present_rows({"text": {"input_ids": torch.zeros(2)}}, ["text"]) is None
