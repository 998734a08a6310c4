"""Learning-rate schedules: linear warmup, then constant, cosine or linear decay.

The schedule is a multiplier of each parameter group's own peak LR (``LambdaLR``), so head LR
multipliers and layer-wise decay keep their ratios throughout training.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from omnifuse.config.training import ScheduleConfig

SCHEDULES = ("constant", "cosine", "linear")


class LRMultiplier:
    """``step -> factor`` of the peak LR.

    Args:
        kind: ``constant``, ``cosine`` or ``linear`` (after warmup).
        warmup_steps: Steps of linear warmup from ``1 / (warmup_steps + 1)`` to 1.
        total_steps: Steps of the whole run (warmup included).
        min_ratio: Factor reached at ``total_steps`` by the decaying schedules.
    """

    def __init__(self, kind: str, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; valid choices: {', '.join(SCHEDULES)}")
        self.kind = kind
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            # (step + 1): the very first update already moves the weights a little.
            return (step + 1) / (self.warmup_steps + 1)
        if self.kind == "constant":
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.kind == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def build_scheduler(optimizer: Optimizer, config: ScheduleConfig, total_steps: int) -> LambdaLR:
    """A ``LambdaLR`` stepping once per optimiser step."""
    multiplier = LRMultiplier(config.type, config.warmup_steps, total_steps, config.min_lr_ratio)
    # A plain function, not the object: LambdaLR then checkpoints only its step counter, so a
    # resumed run follows the current config (e.g. a longer max_steps) instead of the saved one.
    return LambdaLR(optimizer, lambda step: multiplier(step))
