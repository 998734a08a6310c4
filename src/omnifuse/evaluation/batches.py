"""Evaluation data: each task's val/test split as batches, in a fixed order, on the device."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from omnifuse.config.data import DataConfig
from omnifuse.data.datamodule import OmnifuseDataModule
from omnifuse.data.sources import source_card
from omnifuse.inference.options import InferenceError
from omnifuse.inference.pipeline import Pipeline
from omnifuse.inference.runs import task_data
from omnifuse.modalities.base import Processor
from omnifuse.types import Batch


def eval_data(
    pipe: Pipeline, task: str, split: str, data: Path | None, batch_size: int | None
) -> DataConfig:
    """Task ``task``'s data config for evaluating ``split``.

    Args:
        pipe: the loaded run.
        task: the task.
        split: ``val`` or ``test``.
        data: a manifest or shard dir replacing the split (its card, if any, replaces the
            run's; class indices follow that card).
        batch_size: overrides ``data.batch_size``.

    Raises:
        InferenceError: the split is not configured and no ``data`` was given.
    """
    config = task_data(pipe.config, task)
    updates: dict[str, Any] = {"shuffle": False, "augment": False}
    if batch_size is not None:
        updates["batch_size"] = batch_size
    if data is not None:
        updates[split] = data
        updates["card"] = source_card(data) or config.card
    elif getattr(config, split) is None:
        raise InferenceError(
            f"task {task!r} has no {split} data (data.{split} is unset in the run config); "
            "pass a manifest with --data"
        )
    return config.model_copy(update=updates)


def iter_batches(
    pipe: Pipeline, data: DataConfig, split: str, max_samples: int | None
) -> Iterator[Batch]:
    """The split's batches, inputs on the pipeline's device, until ``max_samples`` are seen.

    The last batch is cut so that exactly ``max_samples`` samples are yielded.
    """
    module = OmnifuseDataModule(data, processors=pipe.processors)
    loader = module.val_dataloader() if split == "val" else module.test_dataloader()
    seen = 0
    for batch in loader:
        size = len(batch["ids"])
        if max_samples is not None and seen + size > max_samples:
            batch = take(batch, max_samples - seen)
            size = len(batch["ids"])
        yield to_device(batch, pipe.device)
        seen += size
        if max_samples is not None and seen >= max_samples:
            return


def take(batch: Batch, count: int) -> Batch:
    """The first ``count`` samples of ``batch``."""
    return Batch(
        inputs={m: {k: v[:count] for k, v in d.items()} for m, d in batch["inputs"].items()},
        targets={k: v[:count] for k, v in batch["targets"].items()},
        ids=batch["ids"][:count],
    )


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with every input tensor (and tensor target) on ``device``."""
    return Batch(
        inputs={m: {k: v.to(device) for k, v in d.items()} for m, d in batch["inputs"].items()},
        targets={
            k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch["targets"].items()
        },
        ids=batch["ids"],
    )


def task_inputs(pipe: Pipeline, task: str, batch: Batch) -> dict[str, dict[str, Tensor]]:
    """The batch's inputs that task ``task`` reads.

    Raises:
        InferenceError: none of them is in the batch (the data lacks the task's modalities).
    """
    wanted = pipe.task_inputs(task)
    inputs = {m: batch["inputs"][m] for m in wanted if m in batch["inputs"]}
    if not inputs:
        raise InferenceError(
            f"task {task!r} reads {', '.join(wanted)}, but its data has only "
            f"{', '.join(sorted(batch['inputs'])) or 'no inputs'}"
        )
    return inputs


def present(inputs: dict[str, dict[str, Tensor]], rows: int) -> Tensor:
    """``[B]`` bool: True where every modality of ``inputs`` is present."""
    keep = torch.ones(rows, dtype=torch.bool)
    for batch in inputs.values():
        flags = batch.get("present")
        if flags is not None:
            keep &= flags.bool().cpu()
    return keep


def pictures(
    inputs: dict[str, dict[str, Tensor]], processors: dict[str, Processor[Any]], count: int
) -> list[npt.NDArray[np.float32] | None]:
    """Displayable pictures of the first ``count`` samples: images, or audio spectrograms."""
    if "image" in inputs:
        images = unnormalise(inputs["image"]["pixel_values"][:count].float().cpu(), processors)
        return [img.permute(1, 2, 0).numpy() for img in images]  # (H, W, 3)
    if "audio" in inputs:
        features = inputs["audio"]["features"][:count].float().cpu()  # (B, T, n_mels)
        lengths = inputs["audio"]["mask"][:count].sum(dim=1).tolist()
        return [f[: max(1, int(n))].T.numpy() for f, n in zip(features, lengths, strict=True)]
    rows = next(iter(next(iter(inputs.values())).values())).shape[0] if inputs else 0
    return [None] * min(count, int(rows))


def unnormalise(images: Tensor, processors: dict[str, Processor[Any]]) -> Tensor:
    """``[B, 3, H, W]`` processor outputs -> ``[0, 1]`` (its mean/std, else min-max per image)."""
    config = getattr(processors.get("image"), "config", None)
    mean, std = getattr(config, "mean", None), getattr(config, "std", None)
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
        return (images * s + m).clamp(0.0, 1.0)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-6)


def texts_of(batch: Batch, field: str) -> Sequence[Any] | None:
    """Target ``field`` of the batch as a list (None when the batch lacks it)."""
    value = batch["targets"].get(field)
    if value is None:
        return None
    return value.tolist() if isinstance(value, Tensor) else list(value)
