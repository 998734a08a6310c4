"""StepMetrics: samples/s counts the time spent fetching a batch, not the validation runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from omnifuse.training.callbacks import StepMetrics


def test_throughput_includes_fetching_and_excludes_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([1.0, 2.0, 5.0, 6.0, 20.0, 21.0])  # perf_counter at each hook call, in order
    fake_time = SimpleNamespace(perf_counter=lambda: next(clock))
    monkeypatch.setattr("omnifuse.training.callbacks.time", fake_time)
    trainer: Any = SimpleNamespace(world_size=1, global_step=1, loggers=[], sanity_checking=False)
    module: Any = SimpleNamespace(log=lambda *a, **k: None, step_metrics={})
    meter = StepMetrics()
    batch = {"samples": 10}

    meter.on_train_batch_start(trainer)  # t=1: first batch, fetched before the hook
    meter.on_train_batch_end(trainer, module, None, batch, 0)  # t=2: 1 s
    meter.on_train_batch_start(trainer)  # t=5: fetching took 2 -> 5
    meter.on_train_batch_end(trainer, module, None, batch, 1)  # t=6: 4 s including the fetch
    meter.on_validation_start(trainer, module)  # validation runs between 6 and 20
    meter.on_train_batch_start(trainer)  # t=20: counted from here, not from 6
    meter.on_train_batch_end(trainer, module, None, batch, 2)  # t=21: 1 s
    assert meter.samples == 30
    assert meter.seconds == pytest.approx(1.0 + 4.0 + 1.0)
    assert meter.mean_rate == pytest.approx(30 / 6.0)
