"""Loss weighting (fixed, uncertainty) and PCGrad gradient surgery."""

from __future__ import annotations

import pytest
import torch

from omnifuse.training.weighting import (
    LossWeighting,
    UncertaintyWeighting,
    build_weighting,
    pcgrad,
    surgery,
)


def test_fixed_weights_scale_each_task() -> None:
    weighting = LossWeighting({"a": 0.5, "b": 2.0})
    terms = weighting({"a": torch.tensor(4.0), "b": torch.tensor(1.0)})
    assert {k: float(v) for k, v in terms.items()} == {"a": 2.0, "b": 2.0}
    assert list(weighting.parameters()) == []


def test_uncertainty_term_matches_kendall_formula() -> None:
    weighting = UncertaintyWeighting({"a": 1.0, "b": 0.5})
    with torch.no_grad():
        weighting.log_vars["a"].fill_(0.7)
    terms = {
        k: v.detach()
        for k, v in weighting({"a": torch.tensor(3.0), "b": torch.tensor(2.0)}).items()
    }
    assert float(terms["a"]) == pytest.approx(torch.exp(torch.tensor(-0.7)).item() * 3.0 + 0.7)
    assert float(terms["b"]) == pytest.approx(0.5 * 2.0)  # s_b = 0 at start
    metrics = weighting.metrics()
    assert metrics["a/log_var"] == pytest.approx(0.7)
    assert metrics["a/loss_weight"] == pytest.approx(0.4966, abs=1e-4)


def test_uncertainty_weights_move_towards_the_loss_scale() -> None:
    """At the optimum s_t = log(L_t): a task with a 10x larger loss gets a 10x smaller weight."""
    weighting = UncertaintyWeighting({"big": 1.0, "small": 1.0})
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1)
    losses = {"big": torch.tensor(5.0), "small": torch.tensor(0.5)}
    for _ in range(300):
        optimizer.zero_grad()
        torch.stack(list(weighting(losses).values())).sum().backward()
        optimizer.step()
    s = weighting.log_vars
    assert float(s["big"].detach()) == pytest.approx(torch.log(torch.tensor(5.0)).item(), abs=0.02)
    assert float(s["small"].detach()) == pytest.approx(
        torch.log(torch.tensor(0.5)).item(), abs=0.02
    )


def test_build_weighting_names_choices() -> None:
    assert isinstance(build_weighting("uncertainty", {"a": 1.0}), UncertaintyWeighting)
    with pytest.raises(ValueError, match="unknown loss weighting 'gradnorm'; valid choices"):
        build_weighting("gradnorm", {"a": 1.0})


def test_pcgrad_projects_conflicting_gradients() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1.g2 = -1 < 0: g1 -> g1 - (-1/2) g2 = [0.5, 0.5]; g2 -> g2 - (-1/1) g1 = [0, 1]
    combined = pcgrad(torch.stack([g1, g2]))
    assert combined.tolist() == pytest.approx([0.5, 1.5])
    # each projected gradient no longer conflicts with the other task's original gradient
    assert float(torch.tensor([0.5, 0.5]) @ g2) >= 0 and float(torch.tensor([0.0, 1.0]) @ g1) >= 0


def test_pcgrad_leaves_agreeing_gradients_alone() -> None:
    grads = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0]])
    assert pcgrad(grads).tolist() == pytest.approx(grads.sum(0).tolist())


def reference_pcgrad(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad as the paper writes it, in parameter space: ``[T, P]`` -> ``[P]``."""
    original = grads.double()
    projected = original.clone()
    sq_norms = (original * original).sum(dim=1)
    for i in range(grads.shape[0]):
        for j in torch.randperm(grads.shape[0], generator=generator).tolist():
            if j != i and sq_norms[j] != 0:
                dot = projected[i] @ original[j]
                if dot < 0:
                    projected[i] -= (dot / sq_norms[j]) * original[j]
    return projected.sum(dim=0)


def conflicting_grads(tasks: int, values: int, seed: int = 0) -> torch.Tensor:
    """``[T, P]`` random float64 gradients, most pairs conflicting (a shared negative drift)."""
    generator = torch.Generator().manual_seed(seed)
    grads = torch.randn(tasks, values, generator=generator, dtype=torch.float64)
    grads[1::2] -= 0.8 * grads[0]  # odd tasks pull against task 0
    return grads


def test_pcgrad_equals_the_reference_projection() -> None:
    grads = conflicting_grads(5, 40)
    dots = grads @ grads.T
    assert int((dots < 0).sum()) >= 4  # the case exercises projections, not a plain sum
    expected = reference_pcgrad(grads, torch.Generator().manual_seed(3))
    actual = pcgrad(grads, torch.Generator().manual_seed(3))
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=0)
    assert not torch.allclose(actual, grads.sum(0))


def test_surgery_only_touches_shared_parameters() -> None:
    # parameters: shared (2 values), head_a (1 value), head_b (1 value)
    head_a, head_b = torch.tensor([3.0]), torch.tensor([5.0])
    grads = [
        {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([-1.0, 1.0])},
        {"a": head_a},
        {"b": head_b},
        {},  # no task touched it
    ]
    combined = surgery(grads, ["a", "b"])
    shared = combined[0]
    assert shared is not None and shared.tolist() == pytest.approx([0.5, 1.5])
    assert combined[1] is head_a and combined[2] is head_b  # a task's own gradient, not a copy
    assert combined[3] is None


def test_surgery_equals_the_reference_on_the_shared_block() -> None:
    """Shared parameters (used by several tasks, some by a subset) get the reference projection
    of their flat block; task-only parameters keep their gradient exactly."""
    tasks = ["a", "b", "c", "d"]
    sizes = [6, 3, 4, 2, 5]  # encoder.w, encoder.b, fusion (a, b, c), head_a, head_d
    users = [tasks, tasks, ["a", "b", "c"], ["a"], ["d"]]
    flat = conflicting_grads(len(tasks), sum(sizes), seed=1).float()
    offsets = [sum(sizes[:n]) for n in range(len(sizes))]
    grads: list[dict[str, torch.Tensor]] = []
    for n, size in enumerate(sizes):
        rows = flat[:, offsets[n] : offsets[n] + size]
        grads.append({t: rows[tasks.index(t)].clone() for t in users[n]})
        for k, t in enumerate(tasks):  # the reference's flat rows: zero where a task has none
            if t not in users[n]:
                flat[k, offsets[n] : offsets[n] + size] = 0
    shared = torch.cat([torch.full((s,), len(u) >= 2) for s, u in zip(sizes, users, strict=True)])
    expected = reference_pcgrad(flat[:, shared], torch.Generator().manual_seed(7)).float()
    combined = surgery(grads, tasks, torch.Generator().manual_seed(7))
    got = torch.cat([g.reshape(-1) for g in combined if g is not None])
    torch.testing.assert_close(got[shared], expected, atol=1e-6, rtol=1e-6)
    assert combined[3] is grads[3]["a"] and combined[4] is grads[4]["d"]
