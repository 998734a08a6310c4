"""``omnifuse train``: typed command, help, exit codes (0 done, 1 NaN stop, 2 user mistake)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import omnifuse.training.run as run_module
from cli_helpers import train_app
from omnifuse.tasks.base import Task

runner = CliRunner()


def test_help_comes_from_the_docstring() -> None:
    result = runner.invoke(train_app(), ["train", "--help"])
    assert result.exit_code == 0
    assert "Train CONFIG's model on its tasks" in result.output
    assert "--run-dir" in result.output and "--resume" in result.output


def test_train_then_resume(
    run_yaml: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = str(run_yaml(max_steps=2))
    run_dir = str(tmp_path / "run")
    done = runner.invoke(train_app(), ["train", config, "--run-dir", run_dir])
    assert done.exit_code == 0, done.output
    assert "trained 2 steps" in done.output
    again = runner.invoke(train_app(), ["train", config, "--run-dir", run_dir])
    assert again.exit_code == 2 and "already holds checkpoints; pass --resume" in again.output
    longer = runner.invoke(
        train_app(), ["train", config, "training.max_steps=3", "--run-dir", run_dir, "--resume"]
    )
    assert longer.exit_code == 0, longer.output
    assert "trained 3 steps" in longer.output
    assert "resuming with a changed config: training.max_steps" in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["training.strategy=fsdp"], "needs GPUs"),
        (["training.lr=-1"], "training.lr"),
        (["--resume"], "--resume needs --run-dir"),
        (["training.multitask.gradient=pcgrad"], "needs several tasks in a step"),
        (["training.multitask.ratios={nope: 2}"], "ratios names unknown tasks ['nope']"),
        (["training.multitask.ratios={nope: -1}"], "ratios must be positive"),
        (
            ["training.multitask.sampler=round_robin", "training.multitask.ratios={nope: 2}"],
            "ratios need a sampler that draws tasks",
        ),
        (
            ["training.multitask.curriculum={steps: 1, tasks: [nope]}"],
            "curriculum.tasks names unknown tasks ['nope']",
        ),
        (
            ["training.max_steps=4", "training.multitask.curriculum={steps: 4, tasks: [nope]}"],
            "curriculum.steps=4 leaves no step for the other tasks",
        ),
    ],
)
def test_user_mistakes_exit_2(
    run_yaml: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # a case without --run-dir uses ./runs/<name>-<time>
    result = runner.invoke(
        train_app(),
        ["train", str(run_yaml()), *args],
        env={"COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert message in result.output


def test_nan_stop_exits_1(
    run_yaml: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = run_module.build_tasks

    class NaN(Task):
        def loss(self, model: Any, batch: Any) -> dict[str, Any]:
            return {"loss": inner(model, batch)["loss"] * float("nan")}

    def build(*args: Any) -> Mapping[str, Task]:
        nonlocal inner
        tasks = dict(original(*args))
        inner = tasks["shape"]
        tasks["shape"] = NaN("shape", 1.0, inner.inputs)
        return tasks

    inner: Any = None
    monkeypatch.setattr(run_module, "build_tasks", build)
    config = str(run_yaml(multitask={"tasks_per_step": "all"}))
    result = runner.invoke(train_app(), ["train", config, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "training stopped" in result.output and "non-finite loss at step 1" in result.output
    assert "no checkpoint was written yet" in result.output


def test_broken_data_exits_1(run_yaml: Callable[..., Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok", "label": "circle"}\nnot json\n')
    result = runner.invoke(
        train_app(),
        [
            "train",
            str(run_yaml()),
            f"data.train={bad}",
            "data.val=null",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1, result.output
    assert "data error" in result.output and "bad.jsonl" in result.output


def test_disk_full_during_a_checkpoint_exits_1_naming_the_path(
    run_yaml: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save

    def save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        if obj.get("global_step") == 4:
            handle.write(b"PK\x03\x04 half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    config = str(run_yaml(max_steps=4, checkpoint={"every_n_steps": 2}))
    run_dir = tmp_path / "run"
    result = runner.invoke(train_app(), ["train", config, "--run-dir", str(run_dir)])
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert f"error: cannot write checkpoint {run_dir / 'checkpoints'}" in line
    assert "No space left on device" in line
