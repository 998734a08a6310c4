"""Multi-task data: streams shared by tasks with the same data, exact resume across epochs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omnifuse.config import RunConfig
from omnifuse.models.builder import build_processors
from omnifuse.training.data import MultiTaskLoader, StepBatch, build_streams, build_train_loader


def tasks_with_own_data(shapes_dir: Path) -> dict[str, object]:
    return {
        "shape": {"type": "classification", "head": "shape", "target": "label"},
        "colour": {"type": "classification", "head": "colour", "target": "topic"},
        "itc": {
            "type": "contrastive",
            "a": "image",
            "b": "text",
            "head_a": "image_embed",
            "head_b": "text_embed",
            "data": {"train": str(shapes_dir / "train.jsonl"), "batch_size": 3},
        },
    }


def loader(config: RunConfig) -> MultiTaskLoader:
    streams = build_streams(config, list(config.tasks), build_processors(config.model))
    return build_train_loader(config, streams, length=100)


def summary(step: StepBatch) -> tuple[list[str], dict[str, list[str]]]:
    return step["tasks"], {s: b["ids"] for s, b in step["batches"].items()}


def test_tasks_with_the_same_data_share_a_stream(
    run_config: Callable[..., RunConfig], shapes_dir: Path
) -> None:
    config = run_config(
        "training.multitask.tasks_per_step=all", tasks=tasks_with_own_data(shapes_dir)
    )
    streams = build_streams(config, list(config.tasks), build_processors(config.model))
    assert [(s.name, s.tasks) for s in streams] == [
        ("data", ["shape", "colour"]),
        ("tasks.itc.data", ["itc"]),
    ]
    step = loader(config).next_step()
    assert step["tasks"] == ["shape", "colour", "itc"]
    assert step["stream_of"] == {"shape": "data", "colour": "data", "itc": "tasks.itc.data"}
    assert (
        len(step["batches"]["data"]["ids"]) == 4
        and len(step["batches"]["tasks.itc.data"]["ids"]) == 3
    )
    assert step["samples"] == 7


def test_state_dict_resumes_exactly_across_epochs(
    run_config: Callable[..., RunConfig], shapes_dir: Path
) -> None:
    config = run_config("training.multitask.sampler=uniform", tasks=tasks_with_own_data(shapes_dir))
    first = loader(config)
    assert first.dataset_sizes() == dict.fromkeys(["shape", "colour", "itc"], 26)
    for _ in range(5):
        first.next_step()
    state = first.state_dict()
    expected = [summary(first.next_step()) for _ in range(25)]  # > one epoch of every stream
    resumed = loader(config)
    resumed.load_state_dict(state)
    assert [summary(resumed.next_step()) for _ in range(25)] == expected
    epochs = {name: s["epoch"] for name, s in first.state_dict()["streams"].items()}
    assert epochs["data"] >= 1 or epochs["tasks.itc.data"] >= 1


def test_curriculum_counts_optimiser_steps_of_accumulated_batches(
    run_config: Callable[..., RunConfig], shapes_dir: Path
) -> None:
    config = run_config(
        "training.multitask.sampler=uniform",
        "training.max_steps=20",
        "training.grad_accumulation=2",
        "training.multitask.curriculum={steps: 3, tasks: [itc]}",
        tasks=tasks_with_own_data(shapes_dir),
    )
    run = loader(config)
    tasks = [run.next_step()["tasks"] for _ in range(40)]
    assert tasks[:6] == [["itc"]] * 6  # 3 optimiser steps of 2 batches each
    assert {t for step in tasks[6:] for t in step} == {"shape", "colour", "itc"}
