"""Inference options: frozen dataclasses verified once, and the inference error type.

:class:`DecodingOptions` is checked in ``__post_init__`` (whisper's ``DecodingOptions`` idea), so
the decoding loops never re-validate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

STRATEGIES = ("greedy", "beam", "nucleus")
Strategy = Literal["greedy", "beam", "nucleus"]


class InferenceError(ValueError):
    """A request the loaded run cannot serve: unknown task, missing input, bad option.

    The message names the bad value and the valid choices; ``omnifuse predict``/``eval`` print
    it and exit with status 2.
    """


@dataclass(frozen=True)
class DecodingOptions:
    """How a text decoder turns fused features into tokens.

    Attributes:
        strategy: ``greedy`` (argmax), ``beam`` (beam search) or ``nucleus`` (top-p sampling).
        beam_size: beams kept per sample (``beam``); 1 is exactly greedy.
        length_penalty: beam scores are ``sum log p / length ** length_penalty`` (1 = mean
            log-probability per token, 0 = raw sum, which favours short outputs).
        top_p: ``nucleus``: sample from the smallest most-likely token set with mass ``>= top_p``.
        temperature: ``nucleus``: logits are divided by it before the softmax.
        max_length: most tokens to generate (default and cap: the decoder's ``max_length``).
        seed: ``nucleus``: seed of the sampling generator (same seed, same text); None draws
            from torch's global generator.
        use_cache: reuse attention keys/values between steps (same output, fewer FLOPs).
    """

    strategy: Strategy = "greedy"
    beam_size: int = 4
    length_penalty: float = 1.0
    top_p: float = 0.9
    temperature: float = 1.0
    max_length: int | None = None
    seed: int | None = 0
    use_cache: bool = True

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise InferenceError("invalid decoding options: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(
                f"strategy={self.strategy!r}; valid choices: {', '.join(map(repr, STRATEGIES))}"
            )
        if self.beam_size < 1:
            problems.append(f"beam_size={self.beam_size} must be >= 1")
        if self.length_penalty < 0.0:
            problems.append(f"length_penalty={self.length_penalty} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p={self.top_p} must be in (0, 1]")
        if self.temperature <= 0.0:
            problems.append(
                f"temperature={self.temperature} must be > 0 (use strategy='greedy' for argmax)"
            )
        if self.max_length is not None and self.max_length < 1:
            problems.append(f"max_length={self.max_length} must be >= 1 (or None for the head's)")
        return problems
