"""A stream loads only the modalities its tasks read."""

from __future__ import annotations

from collections.abc import Callable

from omnifuse.config import RunConfig
from omnifuse.registry import build_processors
from omnifuse.training.data import build_streams


def test_stream_loads_only_the_modalities_of_its_tasks(
    run_config: Callable[..., RunConfig],
) -> None:
    tasks = {
        "shape": {"type": "classification", "head": "shape", "target": "label"},
        "colour": {
            "type": "classification",
            "head": "colour",
            "target": "topic",
            "data": {"batch_size": 3},
        },
    }
    config = run_config(tasks=tasks)
    streams = build_streams(config, list(config.tasks), build_processors(config.model))
    loaded = {s.tasks[0]: set(s.module.processors) for s in streams}
    assert loaded == {"shape": {"image", "text"}, "colour": {"text"}}
    batch = next(iter(streams[1].module.train_dataloader()))
    assert set(batch["inputs"]) == {"text"} and len(batch["ids"]) == 3
    assert config.tasks["colour"].data is not None
    assert config.tasks["colour"].data.train == config.data.train  # inherited from the run
