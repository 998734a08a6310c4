"""Captioning LM loss: teacher-forcing shift, hand values, padding, smoothing, and training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.objectives import IGNORE_INDEX, CaptioningLoss, lm_loss, shift_for_teacher_forcing


def test_shift_for_teacher_forcing_hand_case() -> None:
    ids = torch.tensor([[5, 6, 2, 0, 0], [7, 2, 0, 0, 0]])
    shifted = shift_for_teacher_forcing(ids, bos_id=1, pad_id=0)
    assert shifted.decoder_input.tolist() == [[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]]
    assert shifted.targets.tolist() == [[5, 6, 2, -100, -100], [7, 2, -100, -100, -100]]
    assert shifted.decoder_mask.tolist() == [[True] * 4 + [False], [True] * 3 + [False] * 2]
    # pad == EOS: the attention mask, not the id, says what is padding.
    eos_pad = shift_for_teacher_forcing(
        torch.tensor([[5, 2, 2]]), 1, 2, attention_mask=torch.tensor([[True, True, False]])
    )
    assert eos_pad.targets.tolist() == [[5, 2, -100]]


def test_lm_loss_equals_cross_entropy_and_ignores_padding() -> None:
    logits = torch.randn(2, 4, 7)
    targets = torch.tensor([[1, 2, 3, IGNORE_INDEX], [4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    out = lm_loss(logits, targets)
    expected = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.perplexity, expected.exp())
    assert out.num_tokens.item() == 4
    changed = logits.clone()
    changed[targets == IGNORE_INDEX] = 100.0
    torch.testing.assert_close(lm_loss(changed, targets).loss, out.loss)


def test_lm_loss_hand_value_and_accuracy() -> None:
    # Uniform logits over V=4: loss = log 4, perplexity = 4; argmax ties pick id 0.
    out = lm_loss(torch.zeros(1, 3, 4), torch.tensor([[0, 1, IGNORE_INDEX]]))
    assert out.loss.item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert out.perplexity.item() == pytest.approx(4.0, abs=1e-5)
    assert out.accuracy.item() == pytest.approx(0.5)


def test_label_smoothing_changes_loss_not_perplexity() -> None:
    logits, targets = torch.randn(2, 5, 9), torch.randint(0, 9, (2, 5))
    plain, smooth = lm_loss(logits, targets), lm_loss(logits, targets, label_smoothing=0.1)
    torch.testing.assert_close(
        smooth.loss,
        F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1), label_smoothing=0.1),
    )
    assert not torch.allclose(smooth.loss, plain.loss)
    torch.testing.assert_close(smooth.perplexity, plain.perplexity)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        lm_loss(logits, targets, label_smoothing=1.0)


def test_all_ignored_gives_zero_not_nan() -> None:
    logits = torch.randn(1, 3, 5, requires_grad=True)
    out = lm_loss(logits, torch.full((1, 3), IGNORE_INDEX))
    assert out.loss.item() == 0.0
    out.loss.backward()  # still differentiable
    assert logits.grad is not None


def test_captioning_loss_can_be_minimised() -> None:
    ids = torch.tensor([[5, 6, 7, 2, 0], [8, 9, 2, 0, 0]])
    objective = CaptioningLoss(bos_id=1, pad_id=0, label_smoothing=0.0)
    shifted = objective.shift(ids)
    logits = nn.Parameter(torch.randn(2, 5, 12))
    optimiser = torch.optim.Adam([logits], lr=0.1)
    first = objective(logits, shifted.targets).loss.item()
    for _ in range(100):
        optimiser.zero_grad()
        out = objective(logits, shifted.targets)
        out.loss.backward()
        optimiser.step()
    assert out.loss.item() < first / 5
    assert out.accuracy.item() == 1.0
