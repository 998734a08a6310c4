"""Objectives own their parameter constraints; the trainer applies them generically."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from omnifuse.objectives import Constrained, ContrastiveLoss, LogitScale, constrain_all_


class _NonNegative(nn.Module):
    """A toy constrained module: its weight is projected onto ``w >= 0``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([-1.0, 2.0]))

    @torch.no_grad()
    def constrain_(self) -> None:
        self.weight.clamp_(min=0.0)


def test_a_step_past_the_cap_is_clamped_for_every_constrained_submodule() -> None:
    model = nn.ModuleDict({"itc": ContrastiveLoss(temperature=0.1, max_logit_scale=10.0)})
    model["toy"] = _NonNegative()
    scale = model["itc"].logit_scale
    assert isinstance(scale, Constrained) and not isinstance(model["itc"], Constrained)
    optimiser = torch.optim.SGD(model.parameters(), lr=1.0)
    # d(-log_scale)/d(log_scale) = -1: the step moves the log scale up by 1, past log(10).
    (-scale.log_scale).backward()
    optimiser.step()
    assert scale.log_scale.item() == pytest.approx(math.log(10.0) + 1.0)
    constrain_all_(model)
    assert scale.log_scale.item() == pytest.approx(math.log(10.0), abs=1e-6)
    assert model["toy"].weight.tolist() == [0.0, 2.0]


def test_clamp_is_a_deprecated_alias() -> None:
    scale = LogitScale(0.1, max_scale=10.0)
    with torch.no_grad():
        scale.log_scale.fill_(5.0)
    with pytest.warns(FutureWarning, match="constrain_"):
        scale.clamp_()
    assert scale.log_scale.item() == pytest.approx(math.log(10.0))
