"""Masked modelling: BERT masking statistics, patchify, MAE masking and loss, and training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.objectives import (
    IGNORE_INDEX,
    MaskedLanguageModeling,
    MaskedReconstruction,
    frames_to_patches,
    mae_loss,
    mask_tokens,
    mlm_loss,
    patchify,
    random_masking,
    take_tokens,
    unpatchify,
    unshuffle_tokens,
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


def test_patchify_round_trip_and_layout() -> None:
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 48)
    # Patch 1 is row 0, column 1; values ordered (row, col, channel).
    torch.testing.assert_close(patches[0, 1], images[0, :, 0:4, 4:8].permute(1, 2, 0).flatten())
    torch.testing.assert_close(unpatchify(patches, 4, (8, 12)), images)
    square = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(unpatchify(patchify(square, 2), 2), square)
    with pytest.raises(ValueError, match="patch 5 must be >= 1 and divide the image size 8x12"):
        patchify(images, 5)


def test_frames_to_patches_pads_and_masks() -> None:
    features = torch.randn(1, 10, 2)
    mask = torch.arange(10)[None] < 5
    out = frames_to_patches(features, 4, mask)
    assert out.patches.shape == (1, 3, 8)
    assert out.mask.tolist() == [[True, True, False]]  # ceil(5 / 4) valid patches
    torch.testing.assert_close(out.patches[0, 0], features[0, :4].flatten())
    assert torch.equal(out.patches[0, 1, 2:], torch.zeros(6))  # frame 5+ were padding


def test_random_masking_counts_and_restore() -> None:
    tokens = torch.randn(3, 16, 5)
    masking = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))
    assert masking.keep_idx.shape == (3, 4)  # round(16 * 0.25)
    assert masking.mask.sum(dim=1).tolist() == [12, 12, 12]
    kept = take_tokens(tokens, masking.keep_idx)
    assert not bool(masking.mask.gather(1, masking.keep_idx).any())
    restored = unshuffle_tokens(kept, masking, torch.zeros(5))
    expected = tokens.masked_fill(masking.mask[..., None], 0.0)
    torch.testing.assert_close(restored, expected)
    assert not torch.equal(masking.mask[0], masking.mask[1])  # per-sample patterns


def test_random_masking_respects_padding() -> None:
    valid = torch.arange(16)[None] < torch.tensor([[16], [10], [0]])
    masking = random_masking(torch.zeros(3, 16), 0.7, valid_mask=valid)
    keep = [round(16 * 0.3), round(10 * 0.3), 0]  # [5, 3, 0]
    assert masking.keep_mask.sum(dim=1).tolist() == keep
    assert masking.mask.sum(dim=1).tolist() == [16 - 5, 10 - 3, 0]
    assert not bool((masking.mask & ~valid).any())  # padding is never counted as masked
    slots = masking.keep_idx[masking.keep_mask]
    rows = torch.arange(3)[:, None].expand_as(masking.keep_idx)[masking.keep_mask]
    assert bool(valid[rows, slots].all()) and not bool(masking.mask[rows, slots].any())
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\); got 1.0"):
        random_masking(torch.zeros(1, 4), 1.0)


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
