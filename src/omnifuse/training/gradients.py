"""How a training step turns task losses into parameter gradients: jointly, or with PCGrad.

The LightningModule runs one :class:`GradientStrategy` (built from
``training.multitask.gradient`` by :func:`build_gradient_strategy`) and never branches on it:

* :meth:`GradientStrategy.backward_batch` runs the batch's tasks through the module's
  :class:`StepContext` and leaves their gradients where the strategy keeps them;
* :meth:`GradientStrategy.combine` writes the accumulation window's gradient into ``.grad``
  before clipping and the optimiser step;
* :meth:`GradientStrategy.reset` drops a window whose every batch was skipped.

``JointGradients`` backpropagates the sum of the terms, so gradients accumulate in ``.grad``
and ``combine`` has nothing to do. ``PCGrad`` keeps each task's gradient per parameter for the
window and projects conflicting ones on the shared parameters (see
:func:`omnifuse.training.weighting.surgery`).
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

    A batch's tasks run forward together (so they share encoder passes, see
    :meth:`~omnifuse.models.multimodal.MultimodalModel.shared_encodings`), then each task's
    gradient comes from its own backward through the retained graph. Gradients are kept per
    parameter and task as autograd returned them: a parameter only one task touches (a head)
    gets that gradient directly, and only the shared parameters are projected.

    Args:
        seed: Run seed; with the batch counter it seeds the order PCGrad visits tasks in.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._grads: dict[int, dict[str, Tensor]] = {}  # param index -> task -> window sum
        self._tasks: set[str] = set()

    def backward_batch(
        self, context: StepContext, batch: StepBatch, params: Sequence[nn.Parameter]
    ) -> BatchGradients:
        """Every task's forward, then one backward per task (the graph is kept until the last).
        The gradients join the window's per-task sums unless a term is bad."""
        outputs, terms = context.forward_tasks(batch, batch["tasks"])
        detached = {t: term.detach() for t, term in terms.items()}
        bad = context.nonfinite_tasks(terms)
        if bad:
            return BatchGradients(outputs, detached, bad)
        last = len(terms) - 1
        for i, (task, term) in enumerate(terms.items()):
            grads = torch.autograd.grad(
                term, list(params), allow_unused=True, retain_graph=i < last
            )
            self._add(task, grads)
        return BatchGradients(outputs, detached, [])

    def _add(self, task: str, grads: Sequence[Tensor | None]) -> None:
        """Add one task's gradients (None: parameter unused) to the window's sums."""
        self._tasks.add(task)
        for n, grad in enumerate(grads):
            if grad is None:
                continue
            slot = self._grads.setdefault(n, {})
            # Out of place: autograd may hand one tensor to several parameters (``a + b``).
            slot[task] = slot[task] + grad if task in slot else grad

    def combine(self, params: Sequence[nn.Parameter], batches: int) -> None:
        """Write PCGrad's combination of the window's per-task gradients into ``.grad``."""
        tasks = sorted(self._tasks)
        grads = [self._grads.get(n, {}) for n in range(len(params))]
        self.reset()
        if is_distributed():
            # Every rank projects the same global per-task gradients: PCGrad of the mean, not the
            # mean of per-rank PCGrads, so it equals single-process PCGrad on the global batch.
            grads = all_reduce_mean(grads, tasks, params)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, "pcgrad", batches))
        for p, grad in zip(params, owned(surgery(grads, tasks, generator)), strict=True):
            p.grad = None if grad is None else grad.to(p.dtype)

    def reset(self) -> None:
        """Forget the window's per-task gradients."""
        self._grads, self._tasks = {}, set()


def owned(grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    """``grads`` made safe to become ``.grad`` (which averaging and clipping scale in place):
    a copy of a broadcast view (autograd returns ``d sum(w) / d w`` as an expanded scalar) and
    of a tensor already given to another parameter; every other gradient as it is."""
    seen: set[int] = set()
    out: list[Tensor | None] = []
    for grad in grads:
        if grad is not None and (not grad.is_contiguous() or grad.data_ptr() in seen):
            grad = grad.clone(memory_format=torch.contiguous_format)
        if grad is not None:
            seen.add(grad.data_ptr())
        out.append(grad)
    return out


def all_reduce_mean(
    grads: Sequence[Mapping[str, Tensor]], tasks: Sequence[str], params: Sequence[nn.Parameter]
) -> list[dict[str, Tensor]]:
    """The mean over ranks of every (parameter, task) gradient any rank produced.

    A rank without a gradient for one that another rank has contributes zeros; one flat buffer
    goes through a single ``all_reduce``.

    Args:
        grads: Per parameter, task -> this rank's gradient.
        tasks: Every task of the window (the same on every rank).
        params: The parameters (shapes of the zeros).
    """
    used = torch.tensor(
        [[t in g for t in tasks] for g in grads], dtype=torch.int32, device=params[0].device
    )  # [N, T]
    dist.all_reduce(used)
    entries = [(n, t) for n, t in (used > 0).nonzero().tolist()]
    out: list[dict[str, Tensor]] = [{} for _ in grads]
    if not entries:
        return out
    flat = torch.cat(
        [grads[n].get(tasks[t], torch.zeros_like(params[n])).reshape(-1) for n, t in entries]
    )
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for n, t in entries:
        size = params[n].numel()
        out[n][tasks[t]] = flat[offset : offset + size].view_as(params[n])
        offset += size
    return out


def build_gradient_strategy(config: TrainingConfig) -> GradientStrategy:
    """The strategy ``config.multitask.gradient`` names (``none``: joint; ``pcgrad``)."""
    if config.multitask.gradient == "pcgrad":
        return PCGrad(config.seed)
    return JointGradients()
