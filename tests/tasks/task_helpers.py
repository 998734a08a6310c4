"""Shared helpers of the task tests: a tiny model with every pretraining head, real batches
collated from real media files, and an Adam overfitting loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from omnifuse.config import RunConfig, load_config
from omnifuse.data.collate import LoadedSample, TargetField, collate_samples
from omnifuse.models import MultimodalModel, Processors, build_model
from omnifuse.tasks import Task, build_tasks
from omnifuse.types import Batch

TEXTS = ["a red circle", "the blue square", "green triangle moves left", "a big yellow star"]
CAPTIONS = ["red circle", "blue square", "green triangle", "yellow star"]
CLASSES = ("circle", "square", "triangle", "star")

HEADS = [
    "model.heads.image_embed={type: projection, source: image, dim: 32}",
    "model.heads.text_embed={type: projection, source: text, dim: 32}",
    "model.heads.audio_embed={type: projection, source: audio, dim: 32}",
    "model.heads.itm={type: classification, num_classes: 2}",
    "model.heads.mlm={type: mlm}",
    "model.heads.mlm_fused={type: mlm, source: fused}",
    "model.heads.image_rec={type: reconstruction, source: image}",
    "model.heads.audio_rec={type: reconstruction, source: audio}",
    "model.heads.captioner={type: caption_decoder, dim: 32, num_layers: 1, num_heads: 2}",
]
TASKS = {
    "classification": "{head: classify, inputs: [image, text]}",
    "contrastive": "{type: contrastive, a: image, b: text, head_a: image_embed, "
    "head_b: text_embed}",
    "matching": "{type: matching, a: image, b: text, head: itm, head_a: image_embed, "
    "head_b: text_embed}",
    "mlm": "{type: mlm, head: mlm}",
    "mlm_fused": "{type: mlm, head: mlm_fused, inputs: [image, text]}",
    "masked_image": "{type: masked_modeling, modality: image, head: image_rec}",
    "masked_audio": "{type: masked_modeling, modality: audio, head: audio_rec, mask_ratio: 0.5}",
    "captioning": "{type: captioning, head: captioner}",
}


def tiny_run(tasks: Sequence[str], overrides: Sequence[str] = ()) -> RunConfig:
    """The ``tiny`` preset with every pretraining head and the named tasks of :data:`TASKS`."""
    chosen = [f"tasks.{name}={TASKS[name]}" for name in tasks]
    return load_config("tiny", [*HEADS, *chosen, *overrides])


def build(
    tasks: Sequence[str], overrides: Sequence[str] = ()
) -> tuple[MultimodalModel, Processors, dict[str, Task]]:
    """A tiny model, its processors and the named tasks."""
    run = tiny_run(tasks, overrides)
    model, processors = build_model(run.model)
    return model, processors, build_tasks(run, model, processors)


def make_batch(
    processors: Processors,
    media: dict[str, Callable[..., Path]],
    modalities: Sequence[str] = ("image", "text"),
    size: int = 4,
) -> Batch:
    """``size`` real samples (PNG/WAV files, texts) through the real processors and collate."""
    raws: dict[str, Callable[[int], Any]] = {
        "text": lambda i: TEXTS[i],
        "image": lambda i: media["png"](f"img{i}.png", seed=i),
        "audio": lambda i: media["wav"](
            f"clip{i}.wav", seconds=0.2 + 0.1 * i, freq=200.0 * i + 200
        ),
    }
    samples = [
        LoadedSample(
            id=f"s{i}",
            inputs={m: processors[m].load(raws[m](i)) for m in modalities},
            targets={"label": i % len(CLASSES), "caption": CAPTIONS[i]},
        )
        for i in range(size)
    ]
    fields = {
        "label": TargetField("label", "class", CLASSES),
        "caption": TargetField("caption", "text"),
    }
    used = {m: processors[m] for m in modalities}
    return collate_samples(samples, used, fields)


def check_contract(out: dict[str, torch.Tensor]) -> None:
    """``loss`` is a finite scalar with a graph; every other entry is a detached scalar."""
    assert "loss" in out
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
    for key, value in out.items():
        assert value.ndim == 0, key
        if key != "loss" and not key.endswith("_loss"):
            assert not value.requires_grad, f"metric {key} must be detached"


def overfit(
    task: Task,
    model: MultimodalModel,
    batch: Batch,
    steps: int = 60,
    lr: float = 3e-3,
    reseed: int | None = None,
) -> tuple[float, float]:
    """Train model + task on one batch with Adam; returns (first loss, mean of the last 5).

    ``reseed`` re-seeds torch before every step, so random masks repeat (a fixed batch).
    """
    params = [*model.parameters(), *task.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        if reseed is not None:
            torch.manual_seed(reseed)
        loss = task(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses[0], sum(losses[-5:]) / 5
