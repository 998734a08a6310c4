"""Matching: hard-negative mining statistics, pair sampling, the ITM loss, and that it trains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from omnifuse.objectives import MatchingLoss, matching_loss, mine_hard_negatives


def test_mining_never_draws_positive_and_follows_softmax() -> None:
    # Column 0 is the positive of every row; negatives 1..3 have similarities 2, 0, 0.
    rows = 4000
    similarity = torch.tensor([5.0, 2.0, 0.0, 0.0]).expand(rows, 4)
    positives = torch.zeros(rows, 4, dtype=torch.bool)
    positives[:, 0] = True
    drawn = mine_hard_negatives(
        similarity, torch.Generator().manual_seed(0), positive_mask=positives
    )
    assert drawn.shape == (rows,) and drawn.dtype == torch.long
    assert not bool((drawn == 0).any())
    share = torch.bincount(drawn, minlength=4).float() / rows
    hard = math.exp(2.0) / (math.exp(2.0) + 2.0)  # 0.787
    assert share[1].item() == pytest.approx(hard, abs=0.03)
    assert share[2].item() == pytest.approx((1 - hard) / 2, abs=0.03)


def test_mining_default_positive_is_diagonal_with_offset() -> None:
    similarity = torch.randn(3, 6) * 10
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        drawn = mine_hard_negatives(similarity, generator, offset=3)
        assert not bool((drawn == torch.arange(3) + 3).any())
    with pytest.raises(ValueError, match=r"rows \[0\] have no negative"):
        mine_hard_negatives(torch.zeros(1, 1))


def test_sample_pairs_layout() -> None:
    logits = torch.randn(5, 5)
    pairs = MatchingLoss.sample_pairs(logits, generator=torch.Generator().manual_seed(0))
    assert pairs.labels.tolist() == [1] * 5 + [0] * 10
    assert torch.equal(pairs.index_a[:5], pairs.index_b[:5])
    assert not bool((pairs.index_a[5:] == pairs.index_b[5:]).any())  # negatives are never pairs


def test_matching_loss_hand_values() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.0, 3.0]])
    labels = torch.tensor([1, 0, 0])
    out = matching_loss(logits, labels)
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(logits, labels))
    assert out.accuracy.item() == pytest.approx(2 / 3)
    single = matching_loss(torch.tensor([0.0, 0.0]), torch.tensor([1, 0]))
    torch.testing.assert_close(single.loss, torch.tensor(math.log(2.0)))
    with pytest.raises(ValueError, match=r"\[N, 2\], \[N, 1\] or \[N\]; got \(3, 4\)"):
        matching_loss(torch.zeros(3, 4), labels)


def test_matching_loss_can_be_minimised() -> None:
    logits = nn.Parameter(torch.randn(12, 2))
    labels = torch.tensor([1, 0, 0] * 4)
    objective = MatchingLoss()
    optimiser = torch.optim.Adam([logits], lr=0.1)
    first = objective(logits, labels).loss.item()
    for _ in range(100):
        optimiser.zero_grad()
        out = objective(logits, labels)
        out.loss.backward()
        optimiser.step()
    assert out.loss.item() < first / 5
    assert out.accuracy.item() == 1.0
