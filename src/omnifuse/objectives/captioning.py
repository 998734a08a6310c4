"""Captioning / generative language-modelling objective (teacher forcing)."""

from __future__ import annotations

from torch import Tensor, nn

from omnifuse.objectives.functional import (
    IGNORE_INDEX,
    TeacherForcing,
    TokenLossOutput,
    lm_loss,
    shift_for_teacher_forcing,
)

__all__ = ["CaptioningLoss"]


class CaptioningLoss(nn.Module):
    """Next-token cross-entropy with token accuracy and perplexity.

    The caller shifts: build decoder inputs and targets with :meth:`shift` (or
    :func:`~omnifuse.objectives.functional.shift_for_teacher_forcing`), run the decoder on
    ``decoder_input``, and score its ``[B, L, V]`` logits against ``targets`` position by position.

    Args:
        bos_id: id fed to the decoder before the first token.
        pad_id: padding id of the target sequences.
        label_smoothing: in ``[0, 1)``.
    """

    def __init__(self, bos_id: int, pad_id: int, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
        self.bos_id, self.pad_id, self.label_smoothing = bos_id, pad_id, label_smoothing

    def shift(self, ids: Tensor, attention_mask: Tensor | None = None) -> TeacherForcing:
        """``[B, L]`` target ids (no BOS, ending in EOS) -> decoder input, targets and mask."""
        return shift_for_teacher_forcing(ids, self.bos_id, self.pad_id, attention_mask)

    def forward(self, logits: Tensor, targets: Tensor) -> TokenLossOutput:
        """Args:
        logits: ``[B, L, V]`` decoder outputs.
        targets: ``[B, L]`` from :meth:`shift`; ``IGNORE_INDEX`` positions are skipped.
        """
        return lm_loss(logits, targets, IGNORE_INDEX, self.label_smoothing)
