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


def test_surgery_only_touches_shared_parameters() -> None:
    # parameters: shared (2 values), head_a (1 value), head_b (1 value)
    grads = torch.tensor([[1.0, 0.0, 3.0, 0.0], [-1.0, 1.0, 0.0, 5.0]])
    used = torch.tensor([[True, True, False], [True, False, True]])
    combined = surgery(grads, used, [2, 1, 1])
    assert combined.tolist() == pytest.approx([0.5, 1.5, 3.0, 5.0])
