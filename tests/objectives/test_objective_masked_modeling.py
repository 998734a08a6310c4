"""Masked modelling: BERT masking statistics, MAE loss, and training (the masking utilities
themselves are tested in tests/layers/test_masking.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.objectives import (
    IGNORE_INDEX,
    MaskedLanguageModeling,
    MaskedReconstruction,
    mae_loss,
    mask_tokens,
    mlm_loss,
    patchify,
)

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIALS = (PAD, CLS, SEP, MASK)


def _token_batch(rows: int = 64, length: int = 256, vocab: int = 1000) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(4, vocab, (rows, length))
    lengths = torch.randint(length // 2, length + 1, (rows,))
    attention = torch.arange(length) < lengths[:, None]
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    return ids.masked_fill(~attention, PAD), attention


def test_mask_tokens_rate_specials_and_80_10_10() -> None:
    ids, attention = _token_batch()
    out = mask_tokens(ids, attention, MASK, 1000, SPECIALS, 0.15, torch.Generator().manual_seed(0))
    selected = out.labels != IGNORE_INDEX
    candidates = attention & (ids > MASK)
    assert not bool((selected & ~candidates).any())  # never padding or specials
    assert torch.equal(out.input_ids[~selected], ids[~selected])
    assert torch.equal(out.labels[selected], ids[selected])
    assert selected.sum().item() / candidates.sum().item() == pytest.approx(0.15, abs=0.01)
    chosen, original = out.input_ids[selected], ids[selected]
    n = chosen.numel()
    assert (chosen == MASK).sum().item() / n == pytest.approx(0.8, abs=0.02)
    random = (chosen != MASK) & (chosen != original)
    assert random.sum().item() / n == pytest.approx(0.1, abs=0.02)
    assert (chosen == original).sum().item() / n == pytest.approx(0.1, abs=0.02)
    assert not bool(torch.isin(chosen[random], torch.tensor(SPECIALS)).any())


def test_mask_tokens_masks_at_least_one_per_nonempty_row() -> None:
    ids = torch.tensor([[CLS, 10, 11, SEP], [CLS, 12, SEP, PAD], [PAD, PAD, PAD, PAD]])
    attention = ids != PAD
    out = mask_tokens(ids, attention, MASK, 50, SPECIALS, probability=1e-6)
    assert (out.labels != IGNORE_INDEX).sum(dim=1).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match=r"mask_id 60 is outside the vocabulary 0..49"):
        mask_tokens(ids, attention, 60, 50, SPECIALS)


def test_mlm_loss_is_cross_entropy_on_masked_tokens() -> None:
    logits = torch.randn(2, 3, 6)
    labels = torch.tensor([[IGNORE_INDEX, 4, IGNORE_INDEX], [1, IGNORE_INDEX, IGNORE_INDEX]])
    expected = F.cross_entropy(logits.reshape(-1, 6), labels.reshape(-1))
    torch.testing.assert_close(mlm_loss(logits, labels).loss, expected)


def test_mlm_can_be_minimised() -> None:
    ids, attention = _token_batch(rows=4, length=16, vocab=40)
    objective = MaskedLanguageModeling(MASK, 40, (PAD, CLS, SEP), probability=0.3)
    masked = objective.mask(ids, attention, torch.Generator().manual_seed(0))
    logits = nn.Parameter(torch.randn(4, 16, 40))
    optimiser = torch.optim.Adam([logits], lr=0.1)
    first = objective(logits, masked.labels).loss.item()
    for _ in range(100):
        optimiser.zero_grad()
        out = objective(logits, masked.labels)
        out.loss.backward()
        optimiser.step()
    assert out.loss.item() < first / 5


def test_mae_loss_scores_only_masked_tokens() -> None:
    pred, target = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    mask = torch.tensor([[True, False, True, False]])
    assert mae_loss(pred, target, mask, norm_target=False).loss.item() == pytest.approx(1.0)
    pred, target = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = torch.rand(2, 6) < 0.5
    base = mae_loss(pred, target, mask)
    pred2, target2 = pred.clone(), target.clone()
    pred2[~mask], target2[~mask] = 7.0, -3.0
    torch.testing.assert_close(mae_loss(pred2, target2, mask).loss, base.loss)
    assert base.num_masked.item() == int(mask.sum())


def test_mae_norm_target_matches_mae_definition() -> None:
    pred, target = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    mask = torch.ones(1, 2, dtype=torch.bool)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = (pred - normed).pow(2).mean()
    torch.testing.assert_close(mae_loss(pred, target, mask).loss, expected)


def test_mae_can_be_minimised() -> None:
    images = torch.randn(2, 3, 8, 8)
    target = patchify(images, 4)
    objective = MaskedReconstruction(mask_ratio=0.5)
    masking = objective.mask(target, generator=torch.Generator().manual_seed(0))
    pred = nn.Parameter(torch.zeros_like(target))
    optimiser = torch.optim.Adam([pred], lr=0.1)
    first = objective(pred, target, masking.mask).loss.item()
    for _ in range(100):
        optimiser.zero_grad()
        out = objective(pred, target, masking.mask)
        out.loss.backward()
        optimiser.step()
    assert out.loss.item() < first / 5
