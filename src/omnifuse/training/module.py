"""The LightningModule that trains a shared :class:`MultimodalModel` on several tasks.

One training path for every task and every combination of them (manual optimisation, so that
gradient surgery, the NaN policy and accumulation are explicit):

1. reseed the RNGs from ``(seed, batch counter, rank)`` (dropout and task randomness repeat
   exactly after a resume);
2. run every task of the step on its batch -> unweighted losses (tasks reading the same
   unchanged inputs share one encoder pass per modality);
3. weight them (fixed or uncertainty) -> one term per task;
4. if a term is not finite (on any rank): ``on_nan=stop`` raises :class:`NonFiniteLossError`
   naming the step, the task(s) and the last good checkpoint; ``skip`` drops the batch;
5. backward through the :class:`~omnifuse.training.gradients.GradientStrategy`: the sum of the
   terms (joint), or task by task through the shared graph (PCGrad: each task's own gradient);
6. every ``grad_accumulation`` batches: the strategy combines the window's gradients (PCGrad
   surgery), then average, clip, check the gradient norm,
   AdamW step, LR schedule step, then every objective's own parameter constraints
   (:func:`~omnifuse.objectives.constraints.constrain_all_`, e.g. the logit-scale cap).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from omnifuse.config.training import TrainingConfig
from omnifuse.data.streaming import StreamingLoader, sample_seed
from omnifuse.distributed import is_distributed, rank
from omnifuse.modalities.base import Processor
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives.constraints import constrain_all_
from omnifuse.tasks.base import Task
from omnifuse.training.data import MultiTaskLoader, StepBatch, task_batch
from omnifuse.training.distributed import AbsentModalities
from omnifuse.training.gradients import Outputs, build_gradient_strategy
from omnifuse.training.optim import NamedParams, build_optimizer, named_trainables
from omnifuse.training.schedule import build_scheduler
from omnifuse.training.weighting import build_weighting
from omnifuse.types import Batch


class NonFiniteLossError(RuntimeError):
    """A NaN/Inf loss or gradient with ``training.on_nan=stop``, or :data:`MAX_SKIP_STREAK`
    non-finite batches in a row with ``skip``."""


MAX_SKIP_STREAK = 50
"""``on_nan=skip`` gives up after this many non-finite batches in a row: the weights have
diverged (an exploding lr), and since a skipped batch is not a step the run would never end."""


@dataclass
class Counters:
    """Bookkeeping saved in checkpoints.

    Attributes:
        batches: Training batches processed (seeds the per-batch RNG).
        skipped: Batches whose update was dropped because of a NaN/Inf (``on_nan=skip``).
        window: Batches in the current accumulation window.
        valid: Of those, batches that produced a gradient.
        streak: Non-finite batches in a row (``on_nan=skip`` stops at :data:`MAX_SKIP_STREAK`).
    """

    batches: int = 0
    skipped: int = 0
    window: int = 0
    valid: int = 0
    streak: int = 0


@dataclass(frozen=True)
class ValGroup:
    """A validation loader and the tasks evaluated on its batches."""

    tasks: tuple[str, ...]
    loader: StreamingLoader


class OmnifuseModule(L.LightningModule):
    """Trains ``model`` on ``tasks`` (see the module docstring).

    Args:
        model: The shared model.
        tasks: Task name -> task (their parameters, e.g. temperatures, are trained too).
        config: The training section of the run config.
        train_loader: The multi-task training loader (None for evaluation-only use).
        val_groups: Validation loaders and their tasks.
        sharded: The strategy shards parameters (FSDP/DeepSpeed): clip through Lightning and
            skip the local gradient-norm check.
        processors: The model's processors; under DDP/FSDP a modality that another rank's
            batch has is added to this rank's as absent rows (:class:`AbsentModalities`).
    """

    def __init__(
        self,
        model: MultimodalModel,
        tasks: Mapping[str, Task],
        config: TrainingConfig,
        train_loader: MultiTaskLoader | None = None,
        val_groups: Sequence[ValGroup] = (),
        sharded: bool = False,
        processors: Mapping[str, Processor[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.tasks = nn.ModuleDict(dict(tasks))
        weights = {name: task.weight for name, task in tasks.items()}
        self.loss_weighting = build_weighting(config.multitask.weighting, weights)
        self.config = config
        self.train_loader = train_loader
        self.val_groups = list(val_groups)
        self.sharded = sharded
        self.counters = Counters()
        self.step_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}
        self._window_metrics: dict[str, list[float]] = {}
        self._grad_norm: float | None = None
        self._lr: float | None = None
        self._window_tasks: set[str] = set()  # tasks trained in the window: named by on_nan
        self.gradients = build_gradient_strategy(config)
        self.absent_modalities = AbsentModalities(processors or {})

    # --- parameters and optimisation -------------------------------------------------------

    def named_training_parameters(self) -> NamedParams:
        """Model parameters by their model names, then ``tasks.*`` and ``loss_weighting.*``."""
        modules = [("", self.model), ("tasks", self.tasks), ("loss_weighting", self.loss_weighting)]
        return named_trainables(modules)

    def _trainable(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_training_parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        """AdamW over the fine-tuning parameter groups + the step-wise LR schedule."""
        optimizer = build_optimizer(self.named_training_parameters(), self.config)
        scheduler = build_scheduler(optimizer, self.config.schedule, self.config.max_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # --- data ------------------------------------------------------------------------------

    def train_dataloader(self) -> MultiTaskLoader:
        """The multi-task loader given at construction."""
        if self.train_loader is None:
            raise RuntimeError("OmnifuseModule was built without a training loader")
        return self.train_loader

    def val_dataloader(self) -> list[StreamingLoader]:
        """One loader per validation dataset (Lightning passes its index to validation_step)."""
        return [group.loader for group in self.val_groups]

    # --- training --------------------------------------------------------------------------

    def training_step(self, batch: StepBatch, batch_idx: int) -> None:
        """One batch of the current accumulation window (see the module docstring)."""
        self.step_metrics = {}
        self._seed_batch()
        for stream in sorted(batch["batches"]):  # the same order on every rank (collectives)
            part = batch["batches"][stream]
            part["inputs"] = self.absent_modalities(part["inputs"])
        outputs, terms, bad = self.gradients.backward_batch(self, batch, self._trainable())
        self._window_tasks.update(terms)
        if bad:
            self._on_nonfinite("loss", {t: float(terms[t]) for t in bad}, self.counters.batches + 1)
        else:
            self.counters.valid += 1
        self._collect(outputs, terms, skipped=bool(bad))
        self.counters.batches += 1
        self.counters.window += 1
        if self.counters.window >= self.config.grad_accumulation:
            self._optimizer_step()
            self._publish()

    def forward_tasks(
        self, batch: StepBatch, tasks: Sequence[str]
    ) -> tuple[Outputs, dict[str, Tensor]]:
        """Each task's forward on its part of ``batch`` and its weighted term (with graph).

        The tasks share encoder passes: a modality's encoder runs once on a batch that several
        tasks read unchanged (:meth:`MultimodalModel.shared_encodings`).
        """
        with self.model.shared_encodings():
            outputs = {t: self.tasks[t](self.model, task_batch(batch, t)) for t in tasks}
        return outputs, self.loss_weighting({t: out["loss"] for t, out in outputs.items()})

    def _seed_batch(self) -> None:
        """Seed torch/numpy/random from (seed, batch counter, rank): resumable randomness."""
        seed = sample_seed(self.config.seed, "batch", self.counters.batches, rank())
        torch.manual_seed(seed)
        np.random.seed(seed % (1 << 32))
        random.seed(seed)

    def nonfinite_tasks(self, terms: Mapping[str, Tensor]) -> list[str]:
        """Tasks whose term is NaN/Inf on any rank (every rank gets the same answer)."""
        names = list(terms)
        flags = torch.stack([~torch.isfinite(terms[n].detach().float()) for n in names]).float()
        if is_distributed():
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return [n for n, flag in zip(names, flags.tolist(), strict=True) if flag > 0]

    def _on_nonfinite(self, what: str, values: Mapping[str, float], batch: int) -> None:
        """Apply ``on_nan``: raise with the step, tasks and last checkpoint, or count a skip
        (and raise after :data:`MAX_SKIP_STREAK` in a row).

        Args:
            what: What was not finite ("loss", "gradient norm").
            values: Task -> its non-finite value.
            batch: The 1-based batch counter of the batch that produced it.
        """
        if self.config.on_nan == "stop":
            raise NonFiniteLossError(self._nonfinite_message(what, values, batch))
        self.counters.skipped += 1
        self.counters.streak += 1
        if self.counters.streak >= MAX_SKIP_STREAK:
            raise NonFiniteLossError(
                f"training.on_nan=skip: {self.counters.streak} batches in a row were non-finite "
                f"(the weights have diverged); {self._nonfinite_message(what, values, batch)}"
            )

    def _nonfinite_message(self, what: str, values: Mapping[str, float], batch: int) -> str:
        step = self.global_step + 1
        detail = ", ".join(f"{task}: {value}" for task, value in values.items())
        callback = self.trainer.checkpoint_callback if self._trainer is not None else None
        last = getattr(callback, "last_model_path", "") or ""
        where = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
        return (
            f"non-finite {what} at step {step} (batch {batch}) in task(s) {detail}; {where}. "
            "Set training.on_nan=skip to drop such updates, or lower training.lr / check the data."
        )

    def _optimizer_step(self) -> None:
        """Combine (the gradient strategy) and average the window's gradients, clip, check, step;
        then reset the window."""
        optimizer = self._optimizer()
        self._grad_norm = self._lr = None
        valid = self.counters.valid
        self.counters.window = self.counters.valid = 0
        tasks, self._window_tasks = sorted(self._window_tasks), set()
        if valid == 0:  # every batch of the window was skipped
            optimizer.zero_grad(set_to_none=True)
            self.gradients.reset()
            return
        params = self._trainable()
        self.gradients.combine(params, self.counters.batches)
        for p in params:
            if p.grad is not None and valid > 1:
                p.grad.div_(valid)
        norm = self._clip(optimizer, params)
        if norm is not None and not bool(torch.isfinite(norm)):
            # the global norm of the window's gradient, which these tasks produced
            values = dict.fromkeys(tasks, float(norm))
            self._on_nonfinite("gradient norm", values, self.counters.batches)
            optimizer.zero_grad(set_to_none=True)
            return
        self.counters.streak = 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self._lr = float(self._scheduler().get_last_lr()[0])  # the LR this update used
        self._scheduler().step()
        constrain_all_(self)  # e.g. contrastive logit scales back under their cap
        if norm is not None:
            self._grad_norm = float(norm)

    def _clip(self, optimizer: Any, params: list[nn.Parameter]) -> Tensor | None:
        """Clip the global gradient norm; return it (None under sharded strategies)."""
        clip = self.config.grad_clip
        if self.sharded:
            if clip is not None:
                self.clip_gradients(
                    optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm"
                )
            return None
        with_grad = [p for p in params if p.grad is not None]
        if not with_grad:
            return torch.zeros(())
        return torch.nn.utils.clip_grad_norm_(with_grad, clip if clip is not None else float("inf"))

    def _optimizer(self) -> LightningOptimizer:
        optimizer = self.optimizers()
        if not isinstance(optimizer, LightningOptimizer):
            raise TypeError(f"expected one optimizer, got {type(optimizer).__name__}")
        return optimizer

    def _scheduler(self) -> LRScheduler:
        scheduler = self.lr_schedulers()
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"expected one LR scheduler, got {type(scheduler).__name__}")
        return scheduler

    # --- logging ---------------------------------------------------------------------------

    def _collect(
        self,
        outputs: Mapping[str, Mapping[str, Tensor]],
        terms: Mapping[str, Tensor],
        skipped: bool,
    ) -> None:
        """Add this batch's scalars to the accumulation window; show task losses in the bar.

        Only the tasks trained in a batch contribute, so a task's curve never repeats a value.
        """
        window = self._window_metrics
        for task, out in outputs.items():
            for key, value in out.items():
                window.setdefault(f"train/{task}/{key}", []).append(float(value.detach()))
            self.log(f"{task}/loss", window[f"train/{task}/loss"][-1], prog_bar=True, logger=False)
        if not skipped:
            total = float(sum(float(t.detach()) for t in terms.values()))
            window.setdefault("train/loss", []).append(total)

    def _publish(self) -> None:
        """End of a window: its mean metrics become :attr:`step_metrics`, which the StepMetrics
        callback writes to the loggers with the optimiser step as x-axis."""
        metrics = {key: sum(v) / len(v) for key, v in self._window_metrics.items()}
        self._window_metrics = {}
        metrics.update({f"train/{k}": v for k, v in self.loss_weighting.metrics().items()})
        metrics["train/skipped"] = float(self.counters.skipped)
        if self._lr is not None:
            metrics["train/lr"] = self._lr
        if self._grad_norm is not None:
            metrics["train/grad_norm"] = self._grad_norm
        self.step_metrics = metrics
        self.last_metrics.update(metrics)

    # --- validation ------------------------------------------------------------------------

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Every task of this loader's dataset on ``batch``; logs ``val/<task>/<metric>``."""
        size = len(batch["ids"])
        for task in self.val_groups[dataloader_idx].tasks:
            for key, value in self.tasks[task](self.model, batch).items():
                self.log(
                    f"val/{task}/{key}",
                    value.detach().float(),
                    on_step=False,
                    on_epoch=True,
                    sync_dist=True,
                    batch_size=size,
                    add_dataloader_idx=False,
                    logger=False,  # StepMetrics logs the epoch values at the optimiser step
                )

    # --- checkpoints -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the data position, task-sampler draws and counters; flush the metric logs, so
        a resumed run's logs continue from those of the checkpointed steps."""
        loader = self.train_loader.state_dict() if self.train_loader is not None else None
        checkpoint["omnifuse"] = {"loader": loader, "counters": asdict(self.counters)}
        for logger in self.loggers:
            logger.save()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` stored (the next batch continues the run)."""
        state = checkpoint.get("omnifuse")
        if state is None:
            return
        self.counters = Counters(**state["counters"])
        if self.train_loader is not None and state["loader"] is not None:
            self.train_loader.load_state_dict(state["loader"])
