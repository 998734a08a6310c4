"""A task's ``data`` section completes itself from the run's ``data``."""

from __future__ import annotations

from pathlib import Path

from omnifuse.config import load_config

RUN_DATA = ["data.train=a/train.jsonl", "data.val=a/val.jsonl", "data.batch_size=5"]


def test_task_data_inherits_unset_fields_from_the_run() -> None:
    run = load_config("tiny", [*RUN_DATA, "tasks.t={head: classify, data: {text_field: question}}"])
    data = run.tasks["t"].data
    assert data is not None
    assert (data.train, data.val) == (Path("a/train.jsonl"), Path("a/val.jsonl"))
    assert (data.text_field, data.batch_size) == ("question", 5)


def test_task_with_its_own_train_keeps_no_run_splits() -> None:
    run = load_config("tiny", [*RUN_DATA, "tasks.t={head: classify, data: {train: b.jsonl}}"])
    data = run.tasks["t"].data
    assert data is not None
    assert (data.train, data.val, data.batch_size) == (Path("b.jsonl"), None, 5)
