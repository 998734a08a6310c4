"""Matching (ITM) objective: is this ``(a, b)`` pair a true pair? Generic over modality pairs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnifuse.objectives.functional import (
    MatchingOutput,
    MatchingPairs,
    matching_loss,
    sample_matching_pairs,
)

__all__ = ["MatchingLoss"]


class MatchingLoss(nn.Module):
    """Binary matched/unmatched loss over a matching head's logits, reporting accuracy.

    Typical use (ALBEF/BLIP): take the contrastive logits, draw pairs with :meth:`sample_pairs`
    (true pairs plus similarity-weighted hard negatives), run the fusion model and matching head
    on ``(a[index_a], b[index_b])``, then call this module with the head's logits and ``labels``.
    """

    def forward(self, logits: Tensor, labels: Tensor) -> MatchingOutput:
        """Args:
            logits: ``[N, 2]`` (class 1 = matched) or ``[N]`` single logits.
            labels: ``[N]``, 1 for matched and 0 for unmatched.

        Returns:
            :class:`MatchingOutput` with loss, accuracy and ``[N]`` matched scores.
        """
        return matching_loss(logits, labels)

    @staticmethod
    def sample_pairs(
        logits_ab: Tensor,
        logits_ba: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MatchingPairs:
        """``[B, B]`` similarity logits -> ``[3B]`` pair indices and labels
        (:func:`~omnifuse.objectives.functional.sample_matching_pairs`)."""
        return sample_matching_pairs(logits_ab, logits_ba, generator)
