"""Parameter constraints that objectives own, applied by the training loop after each step.

An objective whose parameters must stay in a set (CLIP's logit scale below its cap) implements
:class:`Constrained`; the trainer calls :func:`constrain_all_` on everything it trains after every
optimiser step, so it never needs to know which objectives have constraints or what they are.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["Constrained", "constrain_all_"]


@runtime_checkable
class Constrained(Protocol):
    """A module that projects its own parameters back into their allowed set, in place."""

    def constrain_(self) -> None:
        """Apply the constraint (under ``torch.no_grad``; called after each optimiser step)."""
        ...


def constrain_all_(module: nn.Module) -> None:
    """Call :meth:`Constrained.constrain_` on ``module`` and every submodule that has it."""
    for sub in module.modules():
        if isinstance(sub, Constrained):
            sub.constrain_()
