"""Next-token sampling: temperature, top-k and top-p (nucleus) filtering, classifier-free guidance.

Options are a frozen dataclass checked once (whisper's ``DecodingOptions`` idea), so the decoding
loop never re-validates them. ``temperature == 0`` means greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is drawn from a row of logits.

    Attributes:
        temperature: logits are divided by it; ``0`` takes the argmax (greedy).
        top_k: keep only the ``top_k`` most likely tokens (None: all).
        top_p: keep the smallest set of most likely tokens whose probability reaches ``top_p``
            (None: all).
        guidance: classifier-free guidance scale ``g``: logits ``u + g * (c - u)`` from the
            conditional ``c`` and unconditional ``u`` passes; ``1`` uses ``c`` alone (one pass).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0.0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be >= 1, or None to keep every token")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1], or None to keep every token")
        if self.guidance < 0.0:
            raise ValueError(f"guidance={self.guidance} must be >= 0 (1 = no guidance)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def guided(self) -> bool:
        """Whether an unconditional pass is needed."""
        return self.guidance != 1.0


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """``[..., V]`` logits with every entry outside the ``k`` largest set to ``-inf``.

    Ties at the k-th value are all kept.
    """
    k = min(k, logits.shape[-1])
    threshold = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """``[..., V]`` logits keeping the smallest most-likely set with probability mass ``>= p``.

    The most likely token is always kept, so ``p`` close to 0 degenerates to greedy.
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # Drop a token when the mass *before* it already reaches p; the first token is never dropped.
    drop_sorted = (probs.cumsum(dim=-1) - probs) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def guide(conditional: Tensor, unconditional: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: ``u + scale * (c - u)`` (``[..., V]`` logits)."""
    return unconditional + scale * (conditional - unconditional)


def sample_next(
    logits: Tensor, options: SamplingOptions, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one token per row.

    Args:
        logits: ``[B, V]`` next-token logits.
        options: temperature and filters.
        generator: random source (on ``logits.device``); None uses torch's global one.

    Returns:
        ``[B]`` long token ids.
    """
    if options.greedy:
        return logits.argmax(dim=-1)
    scaled = logits.float() / options.temperature
    if options.top_k is not None:
        scaled = top_k_filter(scaled, options.top_k)
    if options.top_p is not None:
        scaled = top_p_filter(scaled, options.top_p)
    probs = scaled.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
