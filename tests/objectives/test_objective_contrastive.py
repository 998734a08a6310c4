"""Contrastive objective: hand-computed values, temperature, positives, and that it trains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from omnifuse.objectives import ContrastiveLoss, LogitScale, contrastive_loss


def test_orthogonal_pairs_match_hand_formula() -> None:
    # Logits are s * I: each row's CE is -log(e^s / (e^s + 1)) = log(1 + e^-s), both directions.
    eye = torch.eye(2)
    out = contrastive_loss(eye, 3 * eye, logit_scale=2.0)  # scaling b is undone by normalising
    torch.testing.assert_close(
        out.loss, torch.tensor(math.log1p(math.exp(-2.0))), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(out.loss, torch.tensor(0.1269280110), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.logits_ab, 2 * eye)
    assert out.accuracy.item() == 1.0


def test_positive_mask_spreads_target_over_positives() -> None:
    # Both columns positive: target (1/2, 1/2), loss = -(s - 2 log(1 + e^s)) / 2 = log(1+e^s) - s/2.
    eye = torch.eye(2)
    out = contrastive_loss(eye, eye, 2.0, positive_mask=torch.ones(2, 2, dtype=torch.bool))
    expected = math.log1p(math.exp(2.0)) - 1.0
    torch.testing.assert_close(out.loss, torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.loss, torch.tensor(1.1269280110), atol=1e-6, rtol=0)


def test_module_sample_ids_match_functional_mask() -> None:
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    ids = torch.tensor([0, 1, 0, 2])
    loss = ContrastiveLoss(temperature=0.5)
    mask = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]).bool()
    expected = contrastive_loss(a, b, 2.0, positive_mask=mask)
    torch.testing.assert_close(loss(a, b, sample_ids=ids).loss, expected.loss)
    assert not torch.allclose(loss(a, b).loss, expected.loss)


def test_logit_scale_init_and_clamp() -> None:
    scale = LogitScale(temperature=0.07, max_scale=100.0)
    torch.testing.assert_close(scale(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        scale.log_scale.fill_(math.log(1000.0))
    assert scale().item() == pytest.approx(100.0)
    scale.constrain_()
    assert scale.log_scale.item() == pytest.approx(math.log(100.0))
    assert LogitScale(0.07, max_scale=None, learnable=False).log_scale.requires_grad is False
    with pytest.raises(ValueError, match="max_scale 5"):
        LogitScale(0.07, max_scale=5.0)


def test_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 8\) and \(3, 8\)"):
        contrastive_loss(torch.randn(4, 8), torch.randn(3, 8), 1.0)
    with pytest.raises(ValueError, match=r"positive_mask must be \[4, 4\]"):
        contrastive_loss(torch.randn(4, 8), torch.randn(4, 8), 1.0, positive_mask=torch.ones(2, 2))


def test_contrastive_loss_can_be_minimised() -> None:
    a, b = nn.Parameter(torch.randn(8, 16)), nn.Parameter(torch.randn(8, 16))
    objective = ContrastiveLoss()
    optimiser = torch.optim.Adam([a, b, *objective.parameters()], lr=0.05)
    first = objective(a, b).loss.item()
    for _ in range(100):
        optimiser.zero_grad()
        out = objective(a, b)
        out.loss.backward()
        optimiser.step()
        objective.logit_scale.constrain_()
    assert out.loss.item() < first / 5
    assert out.accuracy.item() == 1.0
    assert abs(objective.logit_scale().item() - 1 / 0.07) > 0.5  # the temperature was learned
