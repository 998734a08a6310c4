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
pull a shared encoder in opposite directions. Its price is one backward pass per task in the
step (through the shared graph) and each task's gradient kept until the step's combination
(see docs/training.md).
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


def pcgrad_coefficients(gram: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad's combination as weights of the original task gradients, from their Gram matrix.

    For each task ``i`` (in turn) and every other task ``j`` in random order: if
    ``g_i · g_j < 0``, ``g_i ← g_i − (g_i · g_j / |g_j|²) g_j`` (``g_j`` unprojected). Every
    projected gradient stays a combination ``Σ_k C[i, k] g_k`` of the originals, and
    ``(Σ_k C[i, k] g_k) · g_j = C[i] · G[:, j]``, so the whole projection runs on the ``[T, T]``
    Gram matrix ``G[k, j] = g_k · g_j``: the gradients are read twice (Gram, then the weighted
    sum), not once per task pair.

    Args:
        gram: ``[T, T]`` float64 Gram matrix of the task gradients.
        generator: Seeds the order in which the other tasks are visited.

    Returns:
        ``[T]`` float64 ``w``: the sum of the projected gradients is ``Σ_k w_k g_k``.
    """
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=gram.dtype, device=gram.device)  # [T, T]
    for i in range(num_tasks):
        order = torch.randperm(num_tasks, generator=generator).tolist()
        for j in order:
            if j == i or gram[j, j] == 0:
                continue
            dot = coefficients[i] @ gram[:, j]
            if dot < 0:
                coefficients[i, j] -= dot / gram[j, j]
    return coefficients.sum(dim=0)


def pcgrad(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Project conflicting task gradients and sum them (PCGrad; see :func:`pcgrad_coefficients`).

    Args:
        grads: ``[T, P]`` flat gradients of ``T`` tasks over the same ``P`` shared values.
        generator: Seeds the order in which the other tasks are visited.

    Returns:
        ``[P]`` the sum of the projected gradients.
    """
    original = grads.double()  # dot products over millions of values: keep them accurate
    weights = pcgrad_coefficients(original @ original.T, generator)  # [T]
    return (weights @ original).to(grads.dtype)


TaskGrads = Mapping[str, Tensor]
"""One parameter's gradients: task -> its gradient (only the tasks that produced one)."""


def surgery(
    grads: Sequence[TaskGrads], tasks: Sequence[str], generator: torch.Generator | None = None
) -> list[Tensor | None]:
    """PCGrad on the parameters two or more tasks share; a single task's gradient elsewhere.

    A parameter only one task touches (its head, its temperature) keeps that task's gradient
    as it is (the same tensor, no copy): projecting there would leak other tasks' gradients into
    it. The shared parameters are projected as one block: the Gram matrix of the task gradients
    is summed parameter by parameter (each parameter's products in its own dtype, their sum in
    float64) and the result is a weighted sum per parameter, so no ``[T, P]`` flat copy of the
    gradients is ever built.

    Args:
        grads: Per parameter, its task gradients (an empty mapping: no gradient).
        tasks: Every task of the step, in a fixed order (the rows PCGrad sees, zero where a task
            has no gradient; the order the generator's permutations refer to).
        generator: Seeds PCGrad's task order.

    Returns:
        Per parameter, its combined gradient (None where no task produced one).
    """
    combined: list[Tensor | None] = [next(iter(g.values())) if len(g) == 1 else None for g in grads]
    shared = [n for n, g in enumerate(grads) if len(g) >= 2]
    if not shared:
        return combined
    row_of = {task: k for k, task in enumerate(tasks)}
    device = next(iter(grads[shared[0]].values())).device
    gram = torch.zeros(len(tasks), len(tasks), dtype=torch.float64, device=device)  # [T, T]
    for n in shared:
        # Only the tasks that have a gradient here: the others' rows are zero.
        rows = torch.stack([g.reshape(-1) for g in grads[n].values()])  # [K, numel]
        at = torch.tensor([row_of[t] for t in grads[n]], device=device)  # [K]
        gram[at[:, None], at[None, :]] += (rows @ rows.T).double()
    weights = pcgrad_coefficients(gram, generator).tolist()  # [T]
    for n in shared:
        combined[n] = _weighted_sum(grads[n], [weights[row_of[t]] for t in grads[n]])
    return combined


def _weighted_sum(grads: TaskGrads, weights: Sequence[float]) -> Tensor:
    """``Σ_t w_t g_t`` over one parameter's task gradients (in their order)."""
    values = list(grads.values())
    out = values[0] * weights[0]
    for grad, weight in zip(values[1:], weights[1:], strict=True):
        out.add_(grad, alpha=weight)
    return out
