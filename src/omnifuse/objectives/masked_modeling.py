"""Masked modelling: BERT-style masked language modelling and MAE-style patch reconstruction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from omnifuse.layers.masking import RandomMasking, random_masking
from omnifuse.objectives.functional import (
    MaskedTokens,
    ReconstructionOutput,
    TokenLossOutput,
    mae_loss,
    mask_tokens,
    mlm_loss,
)

__all__ = ["MaskedLanguageModeling", "MaskedReconstruction"]


class MaskedLanguageModeling(nn.Module):
    """Masks token batches (BERT 80/10/10) and scores predictions at the masked positions.

    Args:
        mask_id: id of the mask token.
        vocab_size: vocabulary size (random replacements are drawn below it).
        special_ids: ids never masked nor used as replacements (include pad, mask, cls, sep).
        probability: share of real tokens selected, in ``(0, 1]``.
    """

    def __init__(
        self, mask_id: int, vocab_size: int, special_ids: Sequence[int], probability: float = 0.15
    ) -> None:
        super().__init__()
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1]; got {probability}")
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary 0..{vocab_size - 1}")
        self.mask_id, self.vocab_size, self.probability = mask_id, vocab_size, probability
        self.special_ids = tuple(sorted({*special_ids, mask_id}))

    def mask(
        self, input_ids: Tensor, attention_mask: Tensor, generator: torch.Generator | None = None
    ) -> MaskedTokens:
        """``[B, L]`` ids and bool mask -> masked ``input_ids`` and :meth:`forward`'s ``labels``."""
        return mask_tokens(
            input_ids,
            attention_mask,
            self.mask_id,
            self.vocab_size,
            self.special_ids,
            self.probability,
            generator,
        )

    def forward(self, logits: Tensor, labels: Tensor) -> TokenLossOutput:
        """Args:
        logits: ``[B, L, V]`` predictions for the masked batch.
        labels: ``[B, L]`` from :meth:`mask`.
        """
        return mlm_loss(logits, labels)


class MaskedReconstruction(nn.Module):
    """MAE objective: hide tokens with :meth:`mask`, score reconstructions of the hidden ones.

    Targets come from :func:`~omnifuse.layers.masking.patchify` (images) or
    :func:`~omnifuse.layers.masking.frames_to_patches` (audio features).

    Args:
        mask_ratio: share of valid tokens hidden, in ``[0, 1)`` (MAE: 0.75 for images).
        norm_target: normalise each target patch (MAE's ``norm_pix_loss``).
    """

    def __init__(self, mask_ratio: float = 0.75, norm_target: bool = True) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}")
        self.mask_ratio, self.norm_target = mask_ratio, norm_target

    def mask(
        self,
        tokens: Tensor,
        valid_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> RandomMasking:
        """``[B, N, ...]`` tokens (and ``[B, N]`` validity) -> which tokens to keep and hide."""
        return random_masking(tokens, self.mask_ratio, generator, valid_mask)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor) -> ReconstructionOutput:
        """Args:
        pred: ``[B, N, P]`` reconstructions in original token order.
        target: ``[B, N, P]`` patches.
        mask: ``[B, N]`` bool, True at hidden tokens (``RandomMasking.mask``).
        """
        return mae_loss(pred, target, mask, self.norm_target)
