"""Gradient strategies on a toy 2-task problem: joint sums, PCGrad projects conflicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import torch
from torch import Tensor, nn

from omnifuse.config.training import TrainingConfig
from omnifuse.training.data import StepBatch
from omnifuse.training.gradients import (
    JointGradients,
    Outputs,
    PCGrad,
    build_gradient_strategy,
)

# Linear losses L_t = g_t . w, so d L_t / d w = g_t exactly. g_a . g_b = -1 < 0: they conflict.
TASK_GRADS = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([-1.0, 1.0])}


class ToyContext:
    """A StepContext over one shared parameter ``w`` (2 values)."""

    def __init__(self) -> None:
        self.w = nn.Parameter(torch.zeros(2))

    def forward_tasks(
        self, batch: StepBatch, tasks: Sequence[str]
    ) -> tuple[Outputs, dict[str, Tensor]]:
        outputs = {t: {"loss": TASK_GRADS[t] @ self.w} for t in tasks}
        return outputs, {t: out["loss"] for t, out in outputs.items()}

    def nonfinite_tasks(self, terms: Mapping[str, Tensor]) -> list[str]:
        return [t for t, term in terms.items() if not bool(torch.isfinite(term))]

    def manual_backward(self, loss: Tensor) -> None:
        loss.backward()


def _step(strategy: JointGradients | PCGrad, batches: int = 1) -> Tensor:
    """Run ``batches`` batches of both tasks through ``strategy``; the combined gradient."""
    context = ToyContext()
    batch: StepBatch = {"tasks": ["a", "b"], "batches": {}, "stream_of": {}, "samples": 0}
    for _ in range(batches):
        result = strategy.backward_batch(context, batch, [context.w])
        assert result.bad == [] and sorted(result.terms) == ["a", "b"]
    strategy.combine([context.w], batches)
    assert context.w.grad is not None
    return context.w.grad


def test_joint_is_the_sum_of_the_task_gradients() -> None:
    torch.testing.assert_close(_step(JointGradients()), torch.tensor([0.0, 1.0]))


def test_pcgrad_projects_conflicting_gradients_by_hand() -> None:
    # g_a' = g_a - (g_a.g_b / |g_b|^2) g_b = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
    # g_b' = g_b - (g_b.g_a / |g_a|^2) g_a = (-1, 1) + (1, 0)     = (0, 1)
    torch.testing.assert_close(_step(PCGrad(seed=0)), torch.tensor([0.5, 1.5]), atol=1e-6, rtol=0)


def test_pcgrad_sums_the_window_per_task_then_projects() -> None:
    # Two batches double each task's gradient; the projection is linear in the scale.
    torch.testing.assert_close(
        _step(PCGrad(seed=0), 2), torch.tensor([1.0, 3.0]), atol=1e-6, rtol=0
    )


def test_pcgrad_reset_forgets_the_window() -> None:
    strategy, context = PCGrad(seed=0), ToyContext()
    batch: StepBatch = {"tasks": ["a", "b"], "batches": {}, "stream_of": {}, "samples": 0}
    strategy.backward_batch(context, batch, [context.w])
    strategy.reset()  # a skipped window: its gradients must not reach the next one
    torch.testing.assert_close(_step(strategy), torch.tensor([0.5, 1.5]), atol=1e-6, rtol=0)


def test_a_nonfinite_term_is_reported_and_not_accumulated() -> None:
    context = ToyContext()
    with torch.no_grad():
        context.w.fill_(float("inf"))
    batch: StepBatch = {"tasks": ["a", "b"], "batches": {}, "stream_of": {}, "samples": 0}
    for strategy in (JointGradients(), PCGrad(seed=0)):
        assert strategy.backward_batch(context, batch, [context.w]).bad != []
        assert context.w.grad is None


def test_built_from_the_config_field() -> None:
    assert isinstance(build_gradient_strategy(TrainingConfig()), JointGradients)
    pcgrad = TrainingConfig.model_validate(
        {"multitask": {"gradient": "pcgrad", "tasks_per_step": "all"}}
    )
    assert isinstance(build_gradient_strategy(pcgrad), PCGrad)


class SharedTrunkContext(ToyContext):
    """A shared trunk ``z = 2 w`` computed once per step (like a shared encoder pass) and one
    head per task: ``L_t = g_t . z + h_t``."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = {t: nn.Parameter(torch.zeros(())) for t in TASK_GRADS}

    def forward_tasks(
        self, batch: StepBatch, tasks: Sequence[str]
    ) -> tuple[Outputs, dict[str, Tensor]]:
        trunk = 2 * self.w  # one graph node every task's loss backpropagates through
        outputs = {t: {"loss": TASK_GRADS[t] @ trunk + 3.0 * self.heads[t]} for t in tasks}
        return outputs, {t: out["loss"] for t, out in outputs.items()}


def test_pcgrad_through_a_shared_pass_projects_the_trunk_and_not_the_heads() -> None:
    context, strategy = SharedTrunkContext(), PCGrad(seed=0)
    params = [context.w, context.heads["a"], context.heads["b"]]
    batch: StepBatch = {"tasks": ["a", "b"], "batches": {}, "stream_of": {}, "samples": 0}
    assert strategy.backward_batch(context, batch, params).bad == []
    strategy.combine(params, 1)
    # d L_t / d w = 2 g_t: the by-hand projection above, doubled; each head: its own 3.0
    assert context.w.grad is not None
    torch.testing.assert_close(context.w.grad, torch.tensor([1.0, 3.0]), atol=1e-6, rtol=0)
    for head in context.heads.values():
        assert head.grad is not None and float(head.grad) == 3.0


def test_pcgrad_leaves_a_parameter_no_task_touched_without_gradient() -> None:
    context, strategy = ToyContext(), PCGrad(seed=0)
    unused = nn.Parameter(torch.ones(3))
    batch: StepBatch = {"tasks": ["a", "b"], "batches": {}, "stream_of": {}, "samples": 0}
    strategy.backward_batch(context, batch, [context.w, unused])
    strategy.combine([context.w, unused], 1)
    assert unused.grad is None  # as with joint backward: AdamW skips it (no decay from zeros)


class AliasedGradsContext(ToyContext):
    """Task ``a`` reads ``u + v`` (autograd hands both the same gradient tensor) and ``c.sum()``
    (a broadcast view); task ``b`` reads ``w``."""

    def __init__(self) -> None:
        super().__init__()
        self.u, self.v, self.c = (nn.Parameter(torch.zeros(2)) for _ in range(3))

    def forward_tasks(
        self, batch: StepBatch, tasks: Sequence[str]
    ) -> tuple[Outputs, dict[str, Tensor]]:
        losses = {
            "a": ((self.u + self.v) * torch.tensor([1.0, 2.0])).sum() + self.c.sum(),
            "b": TASK_GRADS["b"] @ self.w,
        }
        outputs = {t: {"loss": losses[t]} for t in tasks}
        return outputs, {t: out["loss"] for t, out in outputs.items()}


@pytest.mark.parametrize("batches", [1, 2])
def test_pcgrad_gradients_can_be_scaled_in_place_independently(batches: int) -> None:
    context, strategy = AliasedGradsContext(), PCGrad(seed=0)
    params = [context.w, context.u, context.v, context.c]
    batch: StepBatch = {"tasks": ["a", "b"], "batches": {}, "stream_of": {}, "samples": 0}
    for _ in range(batches):
        strategy.backward_batch(context, batch, params)
    strategy.combine(params, batches)
    for p in params:  # what averaging and clipping do
        assert p.grad is not None
        p.grad.mul_(0.5)
    torch.testing.assert_close(context.u.grad, batches * torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(context.v.grad, batches * torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(context.c.grad, batches * torch.tensor([0.5, 0.5]))
