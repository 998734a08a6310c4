"""CLIP-style contrastive objective for any pair of embedding sets, with a learnable temperature."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from omnifuse.objectives.distributed import (
    Group,
    batch_offset,
    gather_features,
    gather_sizes,
    is_distributed,
)
from omnifuse.objectives.functional import ContrastiveOutput, contrastive_loss

__all__ = ["ContrastiveLoss", "LogitScale"]


class LogitScale(nn.Module):
    """``1 / temperature`` stored as a log, as in CLIP: ``exp(log_scale)`` capped at ``max_scale``.

    The cap applies to the value returned, so the scale never exceeds ``max_scale``. While the
    parameter sits above the cap its gradient is zero, so the module is
    :class:`~omnifuse.objectives.constraints.Constrained`: the trainer calls :meth:`constrain_`
    after each optimiser step (as CLIP clamps), keeping it at the cap, where gradients still flow.

    Args:
        temperature: initial temperature (CLIP: 0.07, i.e. a scale of about 14.3).
        max_scale: cap on the scale (CLIP: 100); None for no cap.
        learnable: False stores the log scale as a buffer instead of a parameter.
    """

    def __init__(
        self, temperature: float = 0.07, max_scale: float | None = 100.0, learnable: bool = True
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        if max_scale is not None and max_scale < 1.0 / temperature:
            raise ValueError(
                f"max_scale {max_scale} is below the initial scale 1/temperature = "
                f"{1.0 / temperature:.4g}; raise max_scale or the temperature"
            )
        self.max_scale = max_scale
        initial = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(initial)
        else:
            self.register_buffer("log_scale", initial)

    def forward(self) -> Tensor:
        """The scale, a scalar tensor."""
        scale = self.log_scale.exp()
        return scale if self.max_scale is None else scale.clamp(max=self.max_scale)

    @torch.no_grad()
    def constrain_(self) -> None:
        """Cap the stored log scale in place at ``log(max_scale)``."""
        if self.max_scale is not None:
            self.log_scale.clamp_(max=math.log(self.max_scale))

    def clamp_(self) -> None:
        """Deprecated name of :meth:`constrain_`."""
        warnings.warn("LogitScale.clamp_() is now constrain_()", FutureWarning, stacklevel=2)
        self.constrain_()


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between two embedding sets, negatives gathered from every rank.

    Each rank scores its own rows against the rows of all ranks (open_clip's ``local_loss``), so
    the loss is the mean over this rank's rows; averaged over equal-sized ranks it equals the
    full-batch loss. Gradients: see :mod:`omnifuse.objectives.distributed`.

    Args:
        temperature: initial temperature.
        learnable_temperature: learn the temperature (CLIP) or keep it fixed.
        max_logit_scale: cap on ``1 / temperature``; None for no cap.
        gather: gather negatives across ranks when running distributed.
        group: process group for the gather; None for the default group.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_logit_scale: float | None = 100.0,
        gather: bool = True,
        group: Group | None = None,
    ) -> None:
        super().__init__()
        self.logit_scale = LogitScale(temperature, max_logit_scale, learnable_temperature)
        self.gather = gather
        self.group = group

    def forward(
        self, embeddings_a: Tensor, embeddings_b: Tensor, sample_ids: Tensor | None = None
    ) -> ContrastiveOutput:
        """Args:
            embeddings_a: ``[B, D]`` side ``a`` (normalised inside).
            embeddings_b: ``[B, D]`` side ``b``; row ``i`` pairs with ``embeddings_a[i]``.
            sample_ids: ``[B]`` ids such that rows with equal ids are positives of each other
                (e.g. two captions of one image); None means only the pair itself.

        Returns:
            :class:`ContrastiveOutput` with ``[B, N]`` logits over the ``N`` gathered rows.
        """
        scale = self.logit_scale()
        if not (self.gather and is_distributed(self.group)):
            mask = None if sample_ids is None else _same_id(sample_ids)
            return contrastive_loss(embeddings_a, embeddings_b, scale, positive_mask=mask)
        sizes = gather_sizes(embeddings_a.shape[0], embeddings_a.device, self.group)
        all_a = gather_features(embeddings_a, self.group, sizes)
        all_b = gather_features(embeddings_b, self.group, sizes)
        mask = None
        if sample_ids is not None:
            mask = _same_id(gather_features(sample_ids.detach(), self.group, sizes))
        offset = batch_offset(sizes, self.group)
        return contrastive_loss(
            embeddings_a,
            embeddings_b,
            scale,
            all_a=all_a,
            all_b=all_b,
            offset=offset,
            positive_mask=mask,
        )


def _same_id(ids: Tensor) -> Tensor:
    """``[N]`` ids -> ``[N, N]`` bool, True where two rows share an id."""
    if ids.ndim != 1:
        raise ValueError(f"sample_ids must be [B]; got {tuple(ids.shape)}")
    return ids[:, None] == ids[None, :]
