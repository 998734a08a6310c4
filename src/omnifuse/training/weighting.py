"""Combining task losses: fixed weights, uncertainty weighting, and PCGrad gradient surgery.

Weighting turns each task's unweighted loss ``L_t`` into a *term*; the step's loss is the sum of
the terms of the tasks it trained:

* ``fixed``: ``w_t * L_t`` (``w_t`` = the task's ``weight``);
* ``uncertainty`` (Kendall, Gal & Cipolla 2018): ``exp(-s_t) * w_t * L_t + s_t`` with a learned
  log-variance ``s_t`` per task (initialised at 0). ``s_t`` grows for noisy or hard tasks, which
  lowers their weight ``exp(-s_t)``; the ``+ s_t`` term stops it from growing without bound.

PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning") then works on the terms'
gradients: where two tasks' gradients on the *shared* parameters point against each other
(negative dot product), each is projected onto the normal plane of the other before they are
summed. We chose PCGrad over GradNorm because it has no extra hyperparameters or learned weights
(so it composes with either weighting above), is deterministic given the task order, and acts on
exactly the failure it targets: heterogeneous objectives (contrastive vs. classification) that
pull a shared encoder in opposite directions. Its price is one backward pass and one flat
gradient copy per task in the step (see docs/training.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

WEIGHTINGS = ("fixed", "uncertainty")


class LossWeighting(nn.Module):
    """Fixed task weights: ``term_t = w_t * L_t``.

    Args:
        weights: Task name -> fixed weight.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.weights = dict(weights)

    def forward(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-task terms (scalars) of the tasks in ``losses``; their sum is the step loss."""
        return {name: self.weights[name] * loss for name, loss in losses.items()}

    def metrics(self) -> dict[str, float]:
        """Per-task values worth logging (``<task>/<metric>``); none for fixed weights."""
        return {}


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting: ``term_t = exp(-s_t) * w_t * L_t + s_t``.

    The log-variances ``s_t`` are parameters (``log_vars.<task>``), trained with the model at the
    base learning rate and without weight decay.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__(weights)
        self.log_vars = nn.ParameterDict({n: nn.Parameter(torch.zeros(())) for n in weights})

    def forward(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        terms = {}
        for name, loss in losses.items():
            s = self.log_vars[name]
            terms[name] = torch.exp(-s) * (self.weights[name] * loss) + s
        return terms

    def metrics(self) -> dict[str, float]:
        """``<task>/log_var`` (``s_t``) and ``<task>/loss_weight`` (``exp(-s_t)``)."""
        out: dict[str, float] = {}
        for name, s in self.log_vars.items():
            out[f"{name}/log_var"] = float(s.detach())
            out[f"{name}/loss_weight"] = float(torch.exp(-s.detach()))
        return out


def build_weighting(kind: str, weights: Mapping[str, float]) -> LossWeighting:
    """The weighting module named ``kind`` (``fixed`` or ``uncertainty``).

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "fixed":
        return LossWeighting(weights)
    if kind == "uncertainty":
        return UncertaintyWeighting(weights)
    raise ValueError(f"unknown loss weighting {kind!r}; valid choices: {', '.join(WEIGHTINGS)}")


def pcgrad(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Project conflicting task gradients and sum them (PCGrad).

    For each task ``i`` (in turn) and every other task ``j`` in random order: if
    ``g_i · g_j < 0``, ``g_i ← g_i − (g_i · g_j / |g_j|²) g_j`` (``g_j`` unprojected).

    Args:
        grads: ``[T, P]`` flat gradients of ``T`` tasks over the same ``P`` shared values.
        generator: Seeds the order in which the other tasks are visited.

    Returns:
        ``[P]`` the sum of the projected gradients.
    """
    num_tasks = grads.shape[0]
    original = grads.double()  # dot products over millions of values: keep them accurate
    projected = original.clone()
    sq_norms = (original * original).sum(dim=1)  # [T]
    for i in range(num_tasks):
        order = torch.randperm(num_tasks, generator=generator).tolist()
        for j in order:
            if j == i or sq_norms[j] == 0:
                continue
            dot = projected[i] @ original[j]
            if dot < 0:
                projected[i] -= (dot / sq_norms[j]) * original[j]
    return projected.sum(dim=0).to(grads.dtype)


def surgery(
    grads: Tensor, used: Tensor, sizes: Sequence[int], generator: torch.Generator | None = None
) -> Tensor:
    """PCGrad on the parameters two or more tasks share; plain sums elsewhere.

    A parameter only one task touches (its head, its temperature) keeps that task's gradient:
    projecting there would leak other tasks' gradients into it.

    Args:
        grads: ``[T, P]`` flat gradients of ``T`` tasks over all ``P`` trainable values.
        used: ``[T, N]`` bool, whether task ``t`` produced a gradient for parameter ``n``.
        sizes: Number of values of each of the ``N`` parameters (sums to ``P``).
        generator: Seeds PCGrad's task order.

    Returns:
        ``[P]`` the combined gradient.
    """
    shared_params = used.sum(dim=0) >= 2  # [N]
    sizes_t = torch.tensor(list(sizes), device=grads.device)
    shared = torch.repeat_interleave(shared_params.to(grads.device), sizes_t)  # [P]
    combined = grads.sum(dim=0)
    if bool(shared.any()) and grads.shape[0] > 1:
        combined[shared] = pcgrad(grads[:, shared], generator)
    return combined
