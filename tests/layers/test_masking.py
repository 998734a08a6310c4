"""Masking utilities: patches, MAE-style random masking and mask-token substitution."""

from __future__ import annotations

import pytest
import torch

from omnifuse.layers.masking import (
    frames_to_patches,
    new_mask_token,
    patchify,
    random_masking,
    substitute_mask_token,
    take_tokens,
    unpatchify,
    unshuffle_tokens,
)


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


def test_substitute_mask_token_replaces_only_masked_tokens() -> None:
    tokens = torch.randn(2, 3, 4)
    token_mask = torch.tensor([[True, False, False], [False, False, True]])
    mask_token = new_mask_token((1, 1, 4), tokens)
    out = substitute_mask_token(tokens, token_mask, mask_token, "the encoder", "token")
    assert torch.equal(out[0, 0], mask_token[0, 0].detach()) and torch.equal(out[1, 2], out[0, 0])
    assert torch.equal(out[~token_mask], tokens[~token_mask])
    out.sum().backward()  # the mask token learns from every position it fills
    assert mask_token.grad is not None and torch.equal(mask_token.grad, torch.full((1, 1, 4), 2.0))


def test_substitute_mask_token_errors_name_the_encoder_and_unit() -> None:
    tokens = torch.zeros(1, 3, 4)
    with pytest.raises(ValueError, match="the audio encoder has no mask token for 'token_mask'"):
        substitute_mask_token(
            tokens, torch.ones(1, 3, dtype=torch.bool), None, "the audio encoder", "x"
        )
    with pytest.raises(ValueError, match=r"expected \(1, 3\) \(one entry per 4 frames\)"):
        substitute_mask_token(tokens, torch.ones(1, 2), torch.zeros(4), "the encoder", "4 frames")
