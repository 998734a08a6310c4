"""End-to-end training runs (in process): run dir, multi-task, fine-tuning, NaN policies."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor

import omnifuse
import omnifuse.training.run as run_module
from omnifuse.config import ConfigError, RunConfig
from omnifuse.tasks.base import Task
from omnifuse.training import NonFiniteLossError, train

CONTRASTIVE = {
    "type": "contrastive",
    "a": "image",
    "b": "text",
    "head_a": "image_embed",
    "head_b": "text_embed",
}


def read_csv(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics" / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_train_writes_a_complete_run_dir(
    run_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    result = train(
        run_config("training.progress_bar=true", "training.val_every_n_steps=2"), run_dir
    )
    assert result.steps == 4 and result.skipped == 0
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step-000002.ckpt", "step-000004.ckpt"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["steps"] == 4
    assert record["environment"]["lightning"] == L.__version__
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    rows = read_csv(run_dir)
    train_rows = [r for r in rows if r["train/loss"]]
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3, 4]
    for row in train_rows:  # exactly one task per step, the other one's columns stay empty
        assert bool(row["train/shape/loss"]) != bool(row["train/colour/loss"])
    val = [r for r in rows if r["val/shape/loss"]]
    assert [r["step"] for r in val] == ["2", "4"] and all(r["val/colour/accuracy"] for r in val)
    assert "train" in capsys.readouterr().out  # the rich bar rendered without a terminal
    # the final model opens with omnifuse.load and holds the trained weights
    loaded = omnifuse.load(run_dir / "model")
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[f"model.{name}"]), name


def test_all_tasks_with_uncertainty_and_pcgrad(
    run_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    tasks = {
        "shape": {"type": "classification", "head": "shape", "target": "label"},
        "itc": CONTRASTIVE,
    }
    config = run_config(
        "training.multitask.tasks_per_step=all",
        "training.multitask.weighting=uncertainty",
        "training.multitask.gradient=pcgrad",
        "training.lr=0.05",
        "training.gradient_checkpointing=true",
        tasks=tasks,
    )
    result = train(config, tmp_path / "run")
    rows = [r for r in read_csv(tmp_path / "run") if r["train/loss"]]
    assert len(rows) == 4 and all(r["train/shape/loss"] and r["train/itc/loss"] for r in rows)
    assert all(torch.isfinite(torch.tensor(float(r["train/loss"]))) for r in rows)
    # the learned log-variances are optimised (they start at 0) and logged
    assert abs(result.metrics["train/shape/log_var"]) > 1e-3
    assert abs(result.metrics["train/itc/log_var"]) > 1e-3
    assert result.metrics["train/shape/loss_weight"] == pytest.approx(
        torch.exp(torch.tensor(-result.metrics["train/shape/log_var"])).item(), rel=1e-5
    )


def test_init_from_and_freeze(run_config: Callable[..., RunConfig], tmp_path: Path) -> None:
    first = train(run_config("training.max_steps=2"), tmp_path / "first")
    config = run_config(
        "training.max_steps=2",
        f"training.init_from={tmp_path / 'first'}",
        "training.freeze=[encoders.image]",
        "model.heads.shape.num_classes=3",
        tasks={"colour": {"type": "classification", "head": "colour", "target": "topic"}},
    )
    second = train(config, tmp_path / "second")
    report = second.init_report
    assert report is not None and report.source == str(first.model_dir)
    assert report.mismatched == [
        "heads.shape.net.1.weight: (6, 32) -> (3, 32)",
        "heads.shape.net.1.bias: (6,) -> (3,)",
    ]
    assert "encoders.image.patch_embed.weight" in report.loaded
    before = omnifuse.load(tmp_path / "first" / "model").model.state_dict()
    after = omnifuse.load(tmp_path / "second" / "model").model.state_dict()
    frozen = [n for n in after if n.startswith("encoders.image.")]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    trained = "encoders.text.embeddings.token.weight"
    assert not torch.equal(before[trained], after[trained])
    assert json.loads((tmp_path / "second" / "run.json").read_text())["init_from"]["mismatched"]


class Probe(L.Callback):
    """Records each batch's image ``present`` mask and a parameter before/after the batch."""

    def __init__(self) -> None:
        self.present: list[Tensor | None] = []
        self.before: list[Tensor] = []
        self.after: list[Tensor] = []

    def _param(self, pl_module: L.LightningModule) -> Tensor:
        return pl_module.model.fusion.transformer.norm.weight.detach().clone()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, *_: Any) -> None:
        first = batch["batches"]["data"]
        self.present.append(first["inputs"]["image"].get("present"))
        self.before.append(self._param(pl_module))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *_: Any) -> None:
        self.after.append(self._param(pl_module))


def test_modality_dropout_masks_training_batches(
    run_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    probe = Probe()
    config = run_config("training.modality_dropout={image: 0.5}", "training.max_steps=3")
    train(config, tmp_path / "run", callbacks=[probe])
    masks = [m for m in probe.present if m is not None]
    assert masks and sum(int((~m).sum()) for m in masks) > 0


class NaNAt(Task):
    """Wraps a task; its loss is NaN on the given calls (1-based)."""

    def __init__(self, inner: Task, calls: set[int]) -> None:
        super().__init__(inner.name, inner.weight, inner.inputs)
        self.inner, self.calls, self.count = inner, calls, 0

    def loss(self, model: Any, batch: Any) -> dict[str, Tensor]:
        self.count += 1
        out = dict(self.inner(model, batch))
        if self.count in self.calls:
            out["loss"] = out["loss"] * float("nan")
        return out


def inject_nan(monkeypatch: pytest.MonkeyPatch, calls: set[int]) -> None:
    original = run_module.build_tasks

    def build(*args: Any) -> Mapping[str, Task]:
        tasks = dict(original(*args))
        tasks["shape"] = NaNAt(tasks["shape"], calls)
        return tasks

    monkeypatch.setattr(run_module, "build_tasks", build)


def test_nan_stop_names_step_task_and_checkpoint(
    run_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject_nan(monkeypatch, {3})
    config = run_config("training.multitask.tasks_per_step=all")
    with pytest.raises(NonFiniteLossError) as caught:
        train(config, tmp_path / "run")
    message = str(caught.value)
    assert "non-finite loss at step 3" in message and "shape: nan" in message
    assert f"last good checkpoint: {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}" in message
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "stopped" and "step 3" in record["error"]


def test_nan_skip_drops_the_update_and_counts_it(
    run_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject_nan(monkeypatch, {2})
    probe = Probe()
    config = run_config("training.multitask.tasks_per_step=all", "training.on_nan=skip")
    result = train(config, tmp_path / "run", callbacks=[probe])
    assert result.steps == 4 and result.skipped == 1
    assert len(probe.before) == 5  # one extra batch replaces the dropped one
    assert torch.equal(probe.before[1], probe.after[1])  # batch 2: no update
    assert not torch.equal(probe.before[2], probe.after[2])
    assert result.metrics["train/skipped"] == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.strategy=fsdp", "training.strategy='fsdp' needs GPUs"),
        ("training.strategy=deepspeed", "training.strategy='deepspeed' needs GPUs"),
        ("training.freeze=[encoder]", "training.freeze: 'encoder' matches no parameter"),
        ("training.modality_dropout={audio: 0.2}", "the model has no audio encoder"),
        ("data.train=null", "data.train is not set"),
    ],
)
def test_untrainable_configs_are_config_errors(
    run_config: Callable[..., RunConfig], tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        train(run_config(override), tmp_path / "run")


def test_bf16_accumulation_and_warmup(run_config: Callable[..., RunConfig], tmp_path: Path) -> None:
    probe = Probe()
    config = run_config(
        "training.precision=bf16-mixed",
        "training.grad_accumulation=2",
        "training.max_steps=2",
        "training.schedule.warmup_steps=1",
        "training.multitask.sampler=round_robin",
        "training.checkpoint.every_n_steps=1",
        "training.checkpoint.keep=1",
    )
    result = train(config, tmp_path / "run", callbacks=[probe])
    assert result.steps == 2 and len(probe.before) == 4  # 2 batches per optimiser step
    assert torch.equal(probe.before[0], probe.after[0])  # mid-window: no update yet
    assert not torch.equal(probe.before[1], probe.after[1])
    rows = [r for r in read_csv(tmp_path / "run") if r["train/loss"]]
    assert [r["step"] for r in rows] == ["1", "2"]
    # round robin over 2 tasks and 2 batches per window: both tasks in every step's means
    assert all(r["train/shape/loss"] and r["train/colour/loss"] for r in rows)
    # the LR each update used: warmup step 1 at lr/2, then the cosine starts at the peak
    assert float(rows[0]["train/lr"]) == pytest.approx(5e-4)
    assert float(rows[1]["train/lr"]) == pytest.approx(1e-3)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["last.ckpt", "step-000002.ckpt"]  # keep=1: step 1 pruned


class _PushScalePastCap(L.Callback):
    """Moves the contrastive log scale past its cap just before each optimiser step, then
    records the value the step leaves behind."""

    def __init__(self) -> None:
        self.after: list[float] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        with torch.no_grad():
            pl_module.tasks["itc"].objective.logit_scale.log_scale.fill_(10.0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.after.append(float(pl_module.tasks["itc"].objective.logit_scale.log_scale))


def test_the_training_step_applies_objective_constraints(
    run_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    itc = {**CONTRASTIVE, "temperature": 0.1, "max_logit_scale": 20.0}
    probe = _PushScalePastCap()
    train(
        run_config("training.max_steps=2", tasks={"itc": itc}), tmp_path / "run", callbacks=[probe]
    )
    assert probe.after == pytest.approx([math.log(20.0)] * 2, abs=1e-6)
