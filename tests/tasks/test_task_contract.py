"""Contract over every registered task type: buildable, its config registered under its type,
and the requests it serves known to the inference API."""

from __future__ import annotations

import inspect

import pytest

from omnifuse.config.tasks import task_config_types
from omnifuse.tasks import Task, list_tasks, task_class

VERBS = {"classify", "caption", "transcribe", "answer", "embed", "fill_mask", "reconstruct"}
VERBS |= {"generate_video", "chat"}
"""Requests ``Pipeline`` has a shortcut for (``predict`` serves any task)."""


@pytest.mark.parametrize("name", sorted(list_tasks()))
def test_every_registered_task_type_honours_the_contract(name: str) -> None:
    kind = task_class(name)
    assert issubclass(kind, Task) and not inspect.isabstract(kind)
    assert kind.type_name == name and kind.description
    assert task_config_types()[name] is kind.config_class
    assert kind.config_class.model_fields["type"].default == name
    assert set(kind.serves) <= VERBS, f"{name} serves unknown requests"
    assert kind.from_config.__func__ is not Task.from_config.__func__  # type: ignore[attr-defined]
    # A type that predicts overrides predict; one that is scored overrides score.
    assert kind.predict is not Task.predict and kind.score is not Task.score


def test_registering_needs_from_config_and_a_matching_config() -> None:
    from omnifuse.config.tasks import ClassificationTaskConfig
    from omnifuse.tasks import register_task

    class NoBuilder(Task):
        type_name = "classification"
        description = "x"
        config_class = ClassificationTaskConfig

        def loss(self, model, batch):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(TypeError, match="must define from_config"):
        register_task(NoBuilder)

    class Mismatch(NoBuilder):
        type_name = "other"

        @classmethod
        def from_config(cls, name, config, context):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(ValueError, match="must default to 'other'"):
        register_task(Mismatch)
