"""Training callbacks: samples/s, modality dropout, the progress bar and the fault points.

The NaN/Inf policy is not a callback: it has to act between the forward and the backward pass,
so it lives in :class:`~omnifuse.training.module.OmnifuseModule` (``training.on_nan``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import RichProgressBarTheme
from torch import Tensor

from omnifuse.data.streaming import sample_seed
from omnifuse.faults import fault_point
from omnifuse.types import Inputs


class StepMetrics(L.Callback):
    """Measures samples/s and writes each batch's metrics to the loggers.

    The module leaves an optimiser step's scalars (means over its accumulation window) in
    ``pl_module.step_metrics``; this callback adds
    ``train/samples_per_s`` (all ranks, smoothed) and logs them every ``log_every_n_steps``
    optimiser steps with the optimiser step as x-axis. A batch's time runs from the end of the
    previous batch, so it includes fetching (decoding) the batch; validation is excluded.

    Args:
        log_every_n_steps: Logging interval in optimiser steps.
        smoothing: Weight of the newest measurement in the moving average of samples/s.
    """

    def __init__(self, log_every_n_steps: int = 1, smoothing: float = 0.1) -> None:
        self.every = log_every_n_steps
        self.smoothing = smoothing
        self.rate: float | None = None
        self.samples = 0
        self.seconds = 0.0
        self._start: float | None = None
        self._last_end: float | None = None  # None after validation: time from batch start

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        self._start = now if self._last_end is None else self._last_end

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        if self._start is None:
            return
        self._last_end = time.perf_counter()
        elapsed = self._last_end - self._start
        samples = int(batch["samples"]) * trainer.world_size
        self.samples += samples
        self.seconds += elapsed
        rate = samples / max(elapsed, 1e-9)
        smooth = self.smoothing
        self.rate = rate if self.rate is None else smooth * rate + (1 - smooth) * self.rate
        pl_module.log("samples/s", self.rate, prog_bar=True, logger=False)
        metrics = dict(getattr(pl_module, "step_metrics", {}))
        if not metrics:  # inside an accumulation window: log once the window ends
            return
        metrics["train/samples_per_s"] = self.rate
        step = trainer.global_step
        if step % self.every == 0 or step == 1:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the validation epoch's ``val/*`` values at the current optimiser step."""
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @property
    def mean_rate(self) -> float:
        """Samples per second over the whole run (0 before the first batch)."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def drop_modalities(
    inputs: Inputs, probabilities: Mapping[str, float], generator: torch.Generator
) -> dict[str, Tensor]:
    """Drop modalities per sample, in place, by setting ``inputs[m]["present"]`` to False.

    A sample never loses every modality it has: if all of them were drawn to be dropped, one
    (chosen at random) is kept.

    Args:
        inputs: Batch inputs, modality -> tensors (``[B, ...]``), optionally ``present`` ``[B]``.
        probabilities: Modality -> chance of dropping it from a sample.
        generator: CPU generator the draws come from.

    Returns:
        Modality -> ``[B]`` bool, True where the modality was dropped.
    """
    modalities = sorted(inputs)
    if not modalities:
        return {}
    size = next(iter(inputs[modalities[0]].values())).shape[0]
    present = {m: _present(inputs[m], size) for m in modalities}
    drawn = torch.stack([torch.rand(size, generator=generator) for _ in modalities])  # [M, B]
    chance = torch.tensor([probabilities.get(m, 0.0) for m in modalities])[:, None]  # [M, 1]
    had = torch.stack([present[m] for m in modalities])  # [M, B]
    drop = (drawn < chance) & had
    lost_all = had.any(dim=0) & ~(had & ~drop).any(dim=0)  # [B]
    for sample in lost_all.nonzero().flatten().tolist():
        candidates = drop[:, sample].nonzero().flatten()
        pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
        drop[pick, sample] = False
    dropped = {}
    for index, modality in enumerate(modalities):
        dropped[modality] = drop[index]
        if bool(drop[index].any()):
            device = next(iter(inputs[modality].values())).device
            inputs[modality]["present"] = (present[modality] & ~drop[index]).to(device)
    return dropped


def _present(tensors: Mapping[str, Tensor], size: int) -> Tensor:
    """``[B]`` bool on the CPU: the batch's ``present`` mask, or all True."""
    present = tensors.get("present")
    return torch.ones(size, dtype=torch.bool) if present is None else present.bool().cpu()


class ModalityDropout(L.Callback):
    """Applies :func:`drop_modalities` to every training batch (``training.modality_dropout``).

    The draws are seeded from ``(seed, batch counter, rank)``, so a resumed run drops the same
    samples; tasks sharing a dataset in a step see the same drops.

    Args:
        probabilities: Modality -> chance of dropping it from a sample.
        seed: Base seed.
    """

    def __init__(self, probabilities: Mapping[str, float], seed: int = 0) -> None:
        self.probabilities = dict(probabilities)
        self.seed = seed
        self.dropped = dict.fromkeys(self.probabilities, 0)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        counter = getattr(getattr(pl_module, "counters", None), "batches", batch_idx)
        seed = sample_seed(self.seed, "modality_dropout", counter, trainer.global_rank)
        generator = torch.Generator().manual_seed(seed)
        for stream in sorted(batch["batches"]):  # one batch per stream, shared by its tasks
            inputs = batch["batches"][stream]["inputs"]
            for modality, mask in drop_modalities(inputs, self.probabilities, generator).items():
                if modality in self.dropped:
                    self.dropped[modality] += int(mask.sum())


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar for step-based runs: batches done/total with ETA, task losses and
    samples/s (the metrics logged with ``prog_bar=True``); no epoch count or logger version.

    Outside a terminal rich prints no live updates instead of failing.
    """

    def __init__(self) -> None:
        super().__init__(
            refresh_rate=1, leave=True, theme=RichProgressBarTheme(metrics_format=".4g")
        )

    def _get_train_description(self, current_epoch: int) -> str:
        return "train"

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class FaultPoints(L.Callback):
    """The ``step`` and ``validation`` SIGKILL points of :mod:`omnifuse.faults` (always installed;
    without ``OMNIFUSE_FAULT`` each hook is one environment lookup).

    ``on_before_optimizer_step`` runs inside a training step after the backward pass (Lightning
    calls it from the manual ``optimizer.step()``), so a kill there loses a step's gradients.
    """

    def on_before_optimizer_step(self, *args: Any) -> None:
        fault_point("step")

    def on_validation_batch_end(self, *args: Any) -> None:
        fault_point("validation")
