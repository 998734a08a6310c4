"""How a training step turns task losses into parameter gradients: jointly, or with PCGrad.

The LightningModule runs one :class:`GradientStrategy` (built from
``training.multitask.gradient`` by :func:`build_gradient_strategy`) and never branches on it:

* :meth:`GradientStrategy.backward_batch` runs the batch's tasks through the module's
  :class:`StepContext` and leaves their gradients where the strategy keeps them;
* :meth:`GradientStrategy.combine` writes the accumulation window's gradient into ``.grad``
  before clipping and the optimiser step;
* :meth:`GradientStrategy.reset` drops a window whose every batch was skipped.

``JointGradients`` backpropagates the sum of the terms, so gradients accumulate in ``.grad``
and ``combine`` has nothing to do. ``PCGrad`` keeps one flat gradient per task for the window
and projects conflicting ones (see :func:`omnifuse.training.weighting.surgery`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from omnifuse.config.training import TrainingConfig
from omnifuse.data.streaming import sample_seed
from omnifuse.distributed import is_distributed, world_size
from omnifuse.training.data import StepBatch
from omnifuse.training.weighting import surgery

__all__ = [
    "BatchGradients",
    "GradientStrategy",
    "JointGradients",
    "PCGrad",
    "StepContext",
    "build_gradient_strategy",
]

Outputs = dict[str, dict[str, Tensor]]
"""Task -> what its forward returned (``loss``, ``*_loss``, metrics)."""


class BatchGradients(NamedTuple):
    """What :meth:`GradientStrategy.backward_batch` did with one batch.

    Attributes:
        outputs: Per-task forward outputs.
        terms: Detached weighted loss terms (scalars) of the tasks that ran.
        bad: Tasks whose term is not finite (on some rank); empty when the gradient was kept.
    """

    outputs: Outputs
    terms: dict[str, Tensor]
    bad: list[str]


class StepContext(Protocol):
    """What a strategy needs from the training module (``OmnifuseModule`` implements it)."""

    def forward_tasks(
        self, batch: StepBatch, tasks: Sequence[str]
    ) -> tuple[Outputs, dict[str, Tensor]]:
        """Each task's forward on its part of ``batch`` and its weighted term (with graph)."""
        ...

    def nonfinite_tasks(self, terms: Mapping[str, Tensor]) -> list[str]:
        """Tasks whose term is NaN/Inf on any rank (the same answer on every rank)."""
        ...

    def manual_backward(self, loss: Tensor) -> None:
        """Backward through Lightning (precision plugins scale the loss)."""
        ...


class GradientStrategy(ABC):
    """Turns task losses into the gradient of one optimiser step (see the module docstring)."""

    @abstractmethod
    def backward_batch(
        self, context: StepContext, batch: StepBatch, params: Sequence[nn.Parameter]
    ) -> BatchGradients:
        """Forward and backward one batch of the accumulation window.

        Args:
            context: The training module.
            batch: This batch (``batch["tasks"]`` names the tasks to run).
            params: The trainable parameters, in a fixed order.
        """

    @abstractmethod
    def combine(self, params: Sequence[nn.Parameter], batches: int) -> None:
        """Write the window's gradient into ``params``' ``.grad`` (before averaging/clipping).

        Args:
            params: The trainable parameters (the order given to :meth:`backward_batch`).
            batches: Batches trained so far; seeds any randomness of the combination.
        """

    @abstractmethod
    def reset(self) -> None:
        """Forget the window's gradients (every batch of it was skipped)."""


class JointGradients(GradientStrategy):
    """One backward of the summed terms per batch; gradients accumulate in ``.grad``."""

    def backward_batch(
        self, context: StepContext, batch: StepBatch, params: Sequence[nn.Parameter]
    ) -> BatchGradients:
        """Every task's forward, then one backward of the summed terms (unless one is bad)."""
        outputs, terms = context.forward_tasks(batch, batch["tasks"])
        bad = context.nonfinite_tasks(terms)
        if not bad:
            context.manual_backward(torch.stack(list(terms.values())).sum())
        return BatchGradients(outputs, {t: term.detach() for t, term in terms.items()}, bad)

    def combine(self, params: Sequence[nn.Parameter], batches: int) -> None:
        """Nothing to do: backward already summed the window's gradients into ``.grad``."""

    def reset(self) -> None:
        """Nothing to do: the optimiser's ``zero_grad`` drops ``.grad``."""


class PCGrad(GradientStrategy):
    """Per-task gradients summed over the window, then PCGrad surgery on shared parameters.

    Args:
        seed: Run seed; with the batch counter it seeds the order PCGrad visits tasks in.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._grads: dict[str, Tensor] = {}  # task -> [P] flat gradient summed over the window
        self._used: dict[str, Tensor] = {}  # task -> [N] bool, produced a gradient for param n

    def backward_batch(
        self, context: StepContext, batch: StepBatch, params: Sequence[nn.Parameter]
    ) -> BatchGradients:
        """Task by task: forward, then that task's own gradient, so only one task's graph is
        alive at a time. The gradients join the window's per-task sums unless a term is bad."""
        outputs: Outputs = {}
        terms: dict[str, Tensor] = {}
        grads: dict[str, tuple[Tensor, Tensor]] = {}
        for task in batch["tasks"]:
            task_outputs, task_terms = context.forward_tasks(batch, [task])
            outputs[task], term = task_outputs[task], task_terms[task]
            terms[task] = term.detach()
            if context.nonfinite_tasks({task: term}):  # the same answer, task and rank: all ranks
                return BatchGradients(outputs, terms, [task])
            grads[task] = flat_grad(term, params)
        for task, (flat, used) in grads.items():
            if task in self._grads:
                self._grads[task] += flat
                self._used[task] |= used
            else:
                self._grads[task], self._used[task] = flat, used
        return BatchGradients(outputs, terms, [])

    def combine(self, params: Sequence[nn.Parameter], batches: int) -> None:
        """Write PCGrad's combination of the window's per-task gradients into ``.grad``."""
        tasks = sorted(self._grads)
        grads = torch.stack([self._grads[t] for t in tasks])  # [T, P]
        used = torch.stack([self._used[t] for t in tasks])  # [T, N]
        self.reset()
        if is_distributed():
            # Every rank projects the same global per-task gradients: PCGrad of the mean, not the
            # mean of per-rank PCGrads, so it equals single-process PCGrad on the global batch.
            dist.all_reduce(grads)
            grads /= world_size()
            used_count = used.to(torch.int32)
            dist.all_reduce(used_count)
            used = used_count > 0
        generator = torch.Generator().manual_seed(sample_seed(self.seed, "pcgrad", batches))
        combined = surgery(grads, used, [p.numel() for p in params], generator)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = combined[offset : offset + n].view_as(p).to(p.dtype).clone()
            offset += n

    def reset(self) -> None:
        """Forget the window's per-task gradients."""
        self._grads, self._used = {}, {}


def flat_grad(term: Tensor, params: Sequence[nn.Parameter]) -> tuple[Tensor, Tensor]:
    """``d term / d params`` flattened (``[P]``, zeros where unused) and ``[N]`` used flags."""
    grads = torch.autograd.grad(term, list(params), allow_unused=True)
    flat = torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )
    return flat, torch.tensor([g is not None for g in grads], device=flat.device)


def build_gradient_strategy(config: TrainingConfig) -> GradientStrategy:
    """The strategy ``config.multitask.gradient`` names (``none``: joint; ``pcgrad``)."""
    if config.multitask.gradient == "pcgrad":
        return PCGrad(config.seed)
    return JointGradients()
