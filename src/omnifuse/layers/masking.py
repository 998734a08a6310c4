"""Masking utilities shared by encoders and masked-modelling objectives.

Patches (:func:`patchify`/:func:`unpatchify` for images, :func:`frames_to_patches` for feature
frames), MAE-style random token masking (:func:`random_masking`, :func:`take_tokens`,
:func:`unshuffle_tokens`) and the learned mask token that SimMIM-style encoders substitute for
hidden tokens (:func:`new_mask_token`, :func:`substitute_mask_token`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FramePatches",
    "RandomMasking",
    "frames_to_patches",
    "new_mask_token",
    "patchify",
    "random_masking",
    "substitute_mask_token",
    "take_tokens",
    "unpatchify",
    "unshuffle_tokens",
]


class RandomMasking(NamedTuple):
    """Result of :func:`random_masking`.

    Attributes:
        keep_idx: ``[B, K]`` indices of the visible tokens, ``K`` = the most any row keeps.
        mask: ``[B, N]`` bool, True where a valid token is hidden (padding is never True).
        restore_idx: ``[B, N]`` inverse of the per-row shuffle (see :func:`unshuffle_tokens`).
        keep_mask: ``[B, K]`` bool, True where ``keep_idx`` holds a visible token; False only in
            rows with padding, which keep fewer than ``K`` (use it as the encoder's key mask).
    """

    keep_idx: Tensor
    mask: Tensor
    restore_idx: Tensor
    keep_mask: Tensor


class FramePatches(NamedTuple):
    """Result of :func:`frames_to_patches`: ``patches`` ``[B, M, k*F]`` and ``mask`` ``[B, M]``."""

    patches: Tensor
    mask: Tensor


def patchify(images: Tensor, patch: int) -> Tensor:
    """Cut images into non-overlapping square patches in row-major (ViT token) order.

    Args:
        images: ``[B, C, H, W]`` with ``H`` and ``W`` multiples of ``patch``.
        patch: patch side in pixels.

    Returns:
        ``[B, (H / patch) * (W / patch), patch * patch * C]``, values ordered (row, col, channel)
        inside each patch, as MAE does.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W]; got {tuple(images.shape)}")
    b, c, h, w = images.shape
    if patch < 1 or h % patch != 0 or w % patch != 0:
        raise ValueError(f"patch {patch} must be >= 1 and divide the image size {h}x{w}")
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, gh, gw, p, p, C)
    return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(patches: Tensor, patch: int, size: tuple[int, int] | None = None) -> Tensor:
    """Inverse of :func:`patchify`.

    Args:
        patches: ``[B, N, patch * patch * C]``.
        patch: patch side in pixels.
        size: ``(H, W)`` of the image; None means square (``N`` must be a perfect square).

    Returns:
        ``[B, C, H, W]``.
    """
    b, n, values = patches.shape
    if values % (patch * patch) != 0:
        raise ValueError(f"patch width {values} is not a multiple of patch*patch = {patch * patch}")
    c = values // (patch * patch)
    if size is None:
        side = round(n**0.5)
        size = (side * patch, side * patch)
    gh, gw = size[0] // patch, size[1] // patch
    if gh * gw != n or size[0] % patch != 0 or size[1] % patch != 0:
        raise ValueError(f"{n} patches of {patch}px do not tile an image of size {size}")
    x = patches.reshape(b, gh, gw, patch, patch, c)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, gh, p, gw, p)
    return x.reshape(b, c, size[0], size[1])


def frames_to_patches(
    features: Tensor, frames_per_patch: int, mask: Tensor | None = None
) -> FramePatches:
    """Group consecutive feature frames (e.g. log-mel) into patches for masked reconstruction.

    The tail is zero-padded to a whole patch, giving ``M = ceil(T / frames_per_patch)`` patches;
    a patch is valid if any of its frames is, matching an encoder that subsamples time by
    ``frames_per_patch`` (``ceil(L / k)`` tokens for ``L`` valid frames). Padded frames are zeroed
    so the target never holds padding values.

    Args:
        features: ``[B, T, F]``.
        frames_per_patch: ``k``, frames per patch.
        mask: ``[B, T]`` bool, True at valid frames; None means all valid.

    Returns:
        :class:`FramePatches` with ``[B, M, k * F]`` patches and ``[B, M]`` mask.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be [B, T, F]; got {tuple(features.shape)}")
    if frames_per_patch < 1:
        raise ValueError(f"frames_per_patch must be >= 1; got {frames_per_patch}")
    b, t, f = features.shape
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=features.device)
    tail = -t % frames_per_patch
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [{b}, {t}]; got {tuple(mask.shape)}")
    # masked_fill, not a multiply, so NaN or inf in padding cannot leak into the target.
    features = F.pad(features.masked_fill(~mask.bool()[..., None], 0.0), (0, 0, 0, tail))
    mask = F.pad(mask.bool(), (0, tail))
    m = (t + tail) // frames_per_patch
    patches = features.reshape(b, m, frames_per_patch * f)  # (B, M, k*F)
    return FramePatches(patches, mask.reshape(b, m, frames_per_patch).any(dim=2))


def random_masking(
    tokens: Tensor,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    valid_mask: Tensor | None = None,
) -> RandomMasking:
    """Hide a random share of each row's tokens, MAE-style (argsort of per-token noise).

    A row with ``n`` valid tokens keeps ``round(n * (1 - mask_ratio))`` of them and hides the
    rest; padding is neither kept nor counted as hidden. Valid tokens sort before padding, so a
    row's kept tokens are the first of its ``keep_idx``.

    Args:
        tokens: ``[B, N, ...]``; only its shape and device are used.
        mask_ratio: share to hide, in ``[0, 1)``.
        generator: random source on ``tokens``'s device.
        valid_mask: ``[B, N]`` bool, True at real tokens; None means all real.

    Returns:
        :class:`RandomMasking`.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}")
    b, n = tokens.shape[:2]
    device = tokens.device
    valid = (
        torch.ones(b, n, dtype=torch.bool, device=device)
        if valid_mask is None
        else valid_mask.bool()
    )
    if valid.shape != (b, n):
        raise ValueError(f"valid_mask must be [{b}, {n}]; got {tuple(valid.shape)}")
    # float64 so the count matches Python's round() exactly, e.g. 10 * (1 - 0.7).
    keep = (valid.sum(dim=1).double() * (1.0 - mask_ratio)).round().long()  # (B,)
    noise = torch.rand(b, n, generator=generator, device=device).masked_fill(~valid, 2.0)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    width = int(keep.max()) if b > 0 else 0
    keep_mask = torch.arange(width, device=device) < keep[:, None]
    mask = valid & (restore >= keep[:, None])
    return RandomMasking(shuffle[:, :width], mask, restore, keep_mask)


def take_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """Select tokens per row: ``[B, N, D]`` and ``[B, K]`` long -> ``[B, K, D]``."""
    return tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))


def unshuffle_tokens(kept: Tensor, masking: RandomMasking, fill: Tensor) -> Tensor:
    """Put visible tokens back in place and ``fill`` (e.g. a mask token) everywhere else.

    Args:
        kept: ``[B, K, D]`` tokens at ``masking.keep_idx`` (e.g. the encoder's output).
        masking: the :class:`RandomMasking` that chose them.
        fill: ``[D]`` value for hidden and padded positions.

    Returns:
        ``[B, N, D]`` in the original token order.
    """
    b, n = masking.mask.shape
    kept = torch.where(masking.keep_mask[..., None], kept, fill.to(kept.dtype))
    rest = fill.to(kept.dtype).expand(b, n - kept.shape[1], kept.shape[-1])
    return take_tokens(torch.cat([kept, rest], dim=1), masking.restore_idx)


def new_mask_token(shape: Sequence[int], like: Tensor) -> nn.Parameter:
    """A learned mask embedding of ``shape`` (truncated normal, std 0.02, as BEiT/SimMIM), on
    ``like``'s device and dtype so it can be added to an already-moved model."""
    token = torch.zeros(*shape, device=like.device, dtype=like.dtype)
    return nn.Parameter(nn.init.trunc_normal_(token, std=0.02))


def substitute_mask_token(
    tokens: Tensor, token_mask: Tensor, mask_token: Tensor | None, encoder: str, unit: str
) -> Tensor:
    """Replace the masked tokens by the mask token: ``[B, N, D], [B, N] -> [B, N, D]``.

    Args:
        tokens: ``[B, N, D]`` embeddings, before positions are added.
        token_mask: ``[B, N]`` bool, True at tokens to hide.
        mask_token: the encoder's learned mask embedding (any shape broadcasting to ``[D]``);
            None when the encoder never enabled one.
        encoder: names the encoder in errors (``"the image encoder"``).
        unit: what one mask entry stands for, in errors (``"patch"``).

    Raises:
        ValueError: no mask token, or a mask that is not one entry per token.
    """
    if mask_token is None:
        raise ValueError(
            f"{encoder} has no mask token for 'token_mask'; add a reconstruction head reading "
            f"{encoder} (model.heads) or call enable_token_mask()"
        )
    if token_mask.shape != tokens.shape[:2]:
        raise ValueError(
            f"token_mask has shape {tuple(token_mask.shape)}; expected "
            f"{tuple(tokens.shape[:2])} (one entry per {unit})"
        )
    return torch.where(token_mask.bool()[..., None], mask_token.to(tokens), tokens)
