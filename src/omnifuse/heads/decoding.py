"""Decoding strategies for autoregressive text decoders: greedy, beam search, nucleus sampling.

The searches are generic over a :class:`Stepper`: ``stepper(tokens [N, t]) -> logits [N, V]``
for the token after each prefix, plus ``stepper.reorder(index)`` so that its state (context rows,
KV cache) follows the rows when beams are expanded or reordered. :class:`DecoderStepper` adapts
any decoder with the :class:`~omnifuse.heads.CaptionDecoder` interface (:class:`StepDecoder`).

Every search returns ids without BOS, ``[B, T]``: a row's EOS is kept and followed by PAD, and
decoding stops once every row is finished, so greedy search reproduces
:meth:`CaptionDecoder.generate <omnifuse.heads.CaptionDecoder.generate>` token for token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from omnifuse.errors import InferenceError
from omnifuse.layers.sampling import top_p_filter
from omnifuse.modalities.base import EncoderOutput

STRATEGIES = ("greedy", "beam", "nucleus")
Strategy = Literal["greedy", "beam", "nucleus"]


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
        static_cache: with ``use_cache``, keep them in buffers preallocated for the whole
            output (no per-step concatenation; same output). Decoders without a static cache
            ignore it.
    """

    strategy: Strategy = "greedy"
    beam_size: int = 4
    length_penalty: float = 1.0
    top_p: float = 0.9
    temperature: float = 1.0
    max_length: int | None = None
    seed: int | None = 0
    use_cache: bool = True
    static_cache: bool = True

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


class StepDecoder(Protocol):
    """What a decoder offers for incremental decoding (see ``CaptionDecoder``)."""

    bos_id: int
    eos_id: int
    pad_id: int
    max_length: int

    def new_cache(self, static: bool = False) -> Any:
        """An empty cache for :meth:`step`; ``static``: preallocated for ``max_length``."""
        ...

    def step(self, tokens: Tensor, cache: Any, fused: EncoderOutput) -> Tensor:
        """``[N, t]`` prefixes (BOS first) -> ``[N, V]`` next-token logits."""
        ...

    def reorder_cache(self, cache: Any, index: Tensor) -> Any:
        """Rows ``index`` ``[N']`` of the cache."""
        ...


class Stepper(Protocol):
    """A next-token scorer with per-row state."""

    def __call__(self, tokens: Tensor) -> Tensor:
        """``[N, t]`` prefixes (BOS first) -> ``[N, V]`` logits of the next token."""
        ...

    def reorder(self, index: Tensor) -> None:
        """Make row ``i`` of the state a copy of old row ``index[i]`` (``index``: ``[N']``)."""
        ...


class DecoderStepper:
    """:class:`Stepper` over a :class:`StepDecoder` and its cross-attention context.

    Args:
        decoder: e.g. a ``CaptionDecoder`` (in eval mode).
        context: what it cross-attends to: ``tokens [B, S, C]``, ``mask [B, S]``.
        use_cache: run one token per step and keep keys/values (False: rerun every prefix).
        static: with ``use_cache``, ask the decoder for a preallocated (static) cache.
    """

    def __init__(
        self, decoder: StepDecoder, context: EncoderOutput, use_cache: bool, static: bool = False
    ) -> None:
        self.decoder = decoder
        self.context = context
        self.cache = decoder.new_cache(static=static) if use_cache else None

    def __call__(self, tokens: Tensor) -> Tensor:
        return self.decoder.step(tokens, self.cache, self.context)

    def reorder(self, index: Tensor) -> None:
        c = self.context
        self.context = EncoderOutput(c.tokens[index], c.mask[index], c.pooled[index])
        if self.cache is not None:
            self.cache = self.decoder.reorder_cache(self.cache, index)


@dataclass(frozen=True)
class TokenIds:
    """The special ids a search needs."""

    bos: int
    eos: int
    pad: int


@dataclass(frozen=True)
class Decoded:
    """What a search returns.

    Attributes:
        tokens: ``[B, T]`` ids without BOS; EOS kept, then ``pad``.
        scores: ``[B]`` sum of the tokens' log-probabilities (beam search: divided by
            ``length ** length_penalty``, the score it ranked by).
    """

    tokens: Tensor
    scores: Tensor


def sample_search(
    stepper: Stepper,
    batch: int,
    ids: TokenIds,
    steps: int,
    choose: Callable[[Tensor], Tensor],
    device: torch.device | None = None,
) -> Decoded:
    """Token-by-token decoding where ``choose`` picks each next token.

    Args:
        stepper: the scorer (``batch`` rows).
        batch: ``B``.
        ids: BOS/EOS/PAD.
        steps: most tokens to produce.
        choose: ``[B, V]`` logits -> ``[B]`` token ids (argmax, a sampler ...).
        device: where the ids live.

    Returns:
        Tokens ``[B, T]`` and the sum of their log-probabilities ``[B]``.
    """
    # One buffer for every prefix: the stepper sees views, so no step concatenates ids.
    tokens = torch.full((batch, steps + 1), ids.pad, dtype=torch.long, device=device)
    tokens[:, 0] = ids.bos
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    length = 0
    for t in range(steps):
        logits = stepper(tokens[:, : t + 1]).float()  # (B, V)
        token = choose(logits).masked_fill(finished, ids.pad)  # (B,)
        # A fused log-softmax and a gather: `logit - logsumexp` is the same number, but
        # logsumexp runs about ten small kernels (max, inf handling, exp, sum, log) per step.
        logp = logits.log_softmax(dim=-1).gather(1, token[:, None]).squeeze(1)
        scores += logp.masked_fill(finished, 0.0)
        tokens[:, t + 1] = token
        length = t + 1
        finished |= token == ids.eos
        if bool(finished.all()):
            break
    return Decoded(tokens[:, 1 : length + 1], scores)


def greedy_search(
    stepper: Stepper, batch: int, ids: TokenIds, steps: int, device: torch.device | None = None
) -> Decoded:
    """The most likely token at every step (:func:`sample_search` with argmax)."""
    return sample_search(stepper, batch, ids, steps, lambda logits: logits.argmax(-1), device)


def nucleus_search(
    stepper: Stepper,
    batch: int,
    ids: TokenIds,
    steps: int,
    top_p: float,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Decoded:
    """Nucleus (top-p) sampling at ``temperature`` from ``generator`` (Holtzman et al. 2020)."""

    def choose(logits: Tensor) -> Tensor:
        probs = top_p_filter(logits / temperature, top_p).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return sample_search(stepper, batch, ids, steps, choose, device)


_Choice = tuple[int, int, float]
"""A kept beam: ``(row it continues, next token, summed log-probability)``."""


@dataclass
class _Beams:
    """Beam-search bookkeeping for ``B`` samples with ``K`` live beams each (rows ``b * K + k``).

    Attributes:
        tokens: ``[B * K, t]`` live prefixes, BOS first.
        scores: ``[B, K]`` their summed log-probabilities (``-inf`` for unused beams).
        finished: per sample, ``(normalised score, ids ending in EOS)`` of ended hypotheses.
    """

    tokens: Tensor
    scores: Tensor
    size: int
    length_penalty: float
    finished: list[list[tuple[float, list[int]]]] = field(default_factory=list)

    def normalised(self, score: float, length: int) -> float:
        return score / math.pow(length, self.length_penalty)

    def done(self, sample: int) -> bool:
        """A sample is done once it has ``K`` ended hypotheses (whisper's rule, patience 1)."""
        return len(self.finished[sample]) >= self.size

    def select(
        self, sample: int, top: list[tuple[float, int]], vocab: int, eos: int
    ) -> list[_Choice]:
        """The sample's next ``K`` live beams as ``(row, token, score)``, best first.

        ``top`` holds the ``2K`` best ``(score, beam * V + token)`` continuations. An EOS among
        the first ``K`` ends a hypothesis; the others continue (at most ``K``).
        """
        k, length = self.size, self.tokens.shape[1]
        live: list[_Choice] = []
        for rank, (score, flat) in enumerate(top):
            row, token = sample * k + flat // vocab, flat % vocab
            if score == float("-inf") or len(live) == k:
                break
            if token != eos:
                live.append((row, token, score))
            elif rank < k:
                ids = [*self.tokens[row, 1:].tolist(), eos]
                self.finished[sample].append((self.normalised(score, length), ids))
        # Pad with dead beams so every sample keeps K rows.
        return live + [(sample * k, eos, float("-inf"))] * (k - len(live))

    def best(self, sample: int) -> tuple[float, list[int]]:
        """The highest normalised hypothesis; live beams compete if fewer than K ended."""
        candidates = list(self.finished[sample])
        if not self.done(sample):
            length = self.tokens.shape[1] - 1
            for k in range(self.size):
                score = float(self.scores[sample, k])
                if score > float("-inf"):
                    ids = self.tokens[sample * self.size + k, 1:].tolist()
                    candidates.append((self.normalised(score, length), ids))
        if not candidates:  # only when every continuation had probability zero
            return float("-inf"), []
        return max(candidates, key=lambda item: item[0])


def _advance(beams: _Beams, logp: Tensor, eos: int, active: list[int]) -> Tensor:
    """Extend every active sample's beams by one token; returns the rows kept ``[B * K]``."""
    batch, k = beams.scores.shape
    vocab = logp.shape[-1]
    total = (beams.scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
    top_scores, top_flat = total.topk(min(2 * k, k * vocab), dim=-1)  # (B, 2K)
    rows: list[int] = []
    tokens: list[int] = []
    scores: list[float] = []
    for sample in range(batch):
        if sample in active:
            top = list(zip(top_scores[sample].tolist(), top_flat[sample].tolist(), strict=True))
            chosen = beams.select(sample, top, vocab, eos)
        else:  # a done sample keeps dead rows, so the batch stays rectangular
            chosen = [(sample * k + j, eos, float("-inf")) for j in range(k)]
        for row, token, score in chosen:
            rows.append(row)
            tokens.append(token)
            scores.append(score)
    device = beams.tokens.device
    index = torch.tensor(rows, dtype=torch.long, device=device)
    new = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
    beams.tokens = torch.cat([beams.tokens[index], new], dim=1)
    beams.scores = torch.tensor(scores, device=device).reshape(batch, k)
    return index


def beam_search(
    stepper: Stepper,
    batch: int,
    ids: TokenIds,
    steps: int,
    beam_size: int,
    length_penalty: float = 1.0,
    device: torch.device | None = None,
) -> Decoded:
    """Beam search with length-normalised scores.

    Each step keeps the ``K = beam_size`` best prefixes per sample; a continuation by EOS among
    the ``K`` best ends a hypothesis with score ``sum log p / length ** length_penalty``
    (length counts the EOS). A sample is done once ``K`` hypotheses have ended; at ``steps``
    its live beams compete too. ``beam_size=1`` is exactly greedy search.

    Args:
        stepper: the scorer (``batch`` rows; expanded here to ``batch * beam_size``).
        batch: ``B``.
        ids: BOS/EOS/PAD.
        steps: most tokens per hypothesis.
        beam_size: ``K``.
        length_penalty: exponent of the length normalisation (0: raw log-probability).
        device: where the ids live.

    Returns:
        The best hypothesis per sample ``[B, T]`` and its normalised score ``[B]``.
    """
    k = beam_size
    stepper.reorder(torch.arange(batch, device=device).repeat_interleave(k))
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")  # K identical BOS beams would fill the top K with copies
    beams = _Beams(
        tokens=torch.full((batch * k, 1), ids.bos, dtype=torch.long, device=device),
        scores=scores,
        size=k,
        length_penalty=length_penalty,
        finished=[[] for _ in range(batch)],
    )
    for _ in range(steps):
        active = [b for b in range(batch) if not beams.done(b)]
        if not active:
            break
        logp = stepper(beams.tokens).float().log_softmax(dim=-1)  # (B * K, V)
        stepper.reorder(_advance(beams, logp, ids.eos, active))
    best = [beams.best(b) for b in range(batch)]
    return Decoded(_pad([b[1] for b in best], ids.pad, device), torch.tensor([b[0] for b in best]))


def _pad(rows: list[list[int]], pad: int, device: torch.device | None) -> Tensor:
    """Token lists -> ``[B, T]`` padded with ``pad`` (``T`` = the longest list)."""
    out = torch.full((len(rows), max(1, max(len(r) for r in rows))), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(device)


def decode(decoder: StepDecoder, context: EncoderOutput, options: DecodingOptions) -> Decoded:
    """Decode ``context`` with ``decoder`` following ``options`` (no gradients are recorded).

    Args:
        decoder: e.g. a ``CaptionDecoder`` in eval mode.
        context: cross-attention context, ``tokens [B, S, C]`` and ``mask [B, S]``.
        options: strategy, beam size, top-p, temperature, length, seed, cache.

    Returns:
        Tokens ``[B, T]`` (without BOS, EOS kept, then PAD) and their scores ``[B]``.
    """
    # inference_mode skips autograd's view and version bookkeeping on each of a step's ~120 small
    # operations (measured: 7 % of a batch-1 decode, 2 % at batch 16); the results are cloned
    # out of it so that callers get ordinary tensors (inference tensors refuse in-place updates).
    with torch.inference_mode():
        out = _search(decoder, context, options)
    return Decoded(out.tokens.clone(), out.scores.clone())


def _search(decoder: StepDecoder, context: EncoderOutput, options: DecodingOptions) -> Decoded:
    """:func:`decode` without its ``inference_mode``."""
    cap = decoder.max_length
    steps = cap if options.max_length is None else min(options.max_length, cap)
    ids = TokenIds(decoder.bos_id, decoder.eos_id, decoder.pad_id)
    stepper = DecoderStepper(decoder, context, options.use_cache, options.static_cache)
    batch, device = context.tokens.shape[0], context.tokens.device
    if options.strategy == "beam":
        return beam_search(
            stepper, batch, ids, steps, options.beam_size, options.length_penalty, device
        )
    if options.strategy == "nucleus":
        generator = None
        if options.seed is not None:
            generator = torch.Generator(device=device).manual_seed(options.seed)
        return nucleus_search(
            stepper, batch, ids, steps, options.top_p, options.temperature, generator, device
        )
    return greedy_search(stepper, batch, ids, steps, device)
