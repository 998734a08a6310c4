"""Autoregressive prior over a clip's code grid, conditioned by cross-attention on text features.

The ``T' x h x w`` grid is flattened time-major, then row-major (all codes of the first time
step first), and predicted one code at a time after a BOS id. Input position ``i`` holds BOS or
code ``i - 1`` *plus the position embedding of code i*, the code it predicts, so the model always
knows where the next code goes. Positions are factorised (time + row + column embeddings).

Classifier-free guidance needs no extra parameters: a condition whose mask is all False makes
every cross-attention return zeros (see :class:`~omnifuse.layers.attention.MultiHeadAttention`),
which is the "no text" input the prior sees for samples whose text was dropped in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from omnifuse.config.video_generator import VideoPriorConfig
from omnifuse.layers import TransformerStack
from omnifuse.layers.attention import needed_mask
from omnifuse.layers.fused_step import fused_decoder
from omnifuse.layers.sampling import SamplingOptions, guide, sample_next
from omnifuse.layers.transformer import LayerCache, steps_leanly
from omnifuse.modalities.base import EncoderOutput

Cache = Sequence[LayerCache]
"""Per-layer caches (a list from ``new_cache``; read-only here, so any sequence)."""


def null_condition(condition: EncoderOutput) -> EncoderOutput:
    """The same shapes with every position masked out: the unconditional input."""
    return EncoderOutput(
        condition.tokens,
        torch.zeros_like(condition.mask, dtype=torch.bool),
        torch.zeros_like(condition.pooled),
    )


def _stack(a: EncoderOutput, b: EncoderOutput) -> EncoderOutput:
    """Rows of ``a`` then rows of ``b``."""
    return EncoderOutput(
        torch.cat([a.tokens, b.tokens]),
        torch.cat([a.mask, b.mask]),
        torch.cat([a.pooled, b.pooled]),
    )


class VideoPrior(nn.Module):
    """Code embedding + factorised positions + causal cross-attending Transformer + code logits.

    Args:
        codebook_size: ``K``; id ``K`` is BOS.
        grid: ``(T', h, w)`` code grid of one clip.
        context_dim: width of the condition tokens (text encoder or fusion ``dim``).
        config: Transformer width, depth and heads.
    """

    def __init__(
        self,
        codebook_size: int,
        grid: tuple[int, int, int],
        context_dim: int,
        config: VideoPriorConfig,
    ) -> None:
        super().__init__()
        self.codebook_size, self.bos_id, self.grid = codebook_size, codebook_size, grid
        dim = config.dim
        self.token_embed = nn.Embedding(codebook_size + 1, dim)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        self.time_embed = nn.Parameter(torch.zeros(grid[0], dim))
        self.row_embed = nn.Parameter(torch.zeros(grid[1], dim))
        self.col_embed = nn.Parameter(torch.zeros(grid[2], dim))
        for table in (self.time_embed, self.row_embed, self.col_embed):
            nn.init.trunc_normal_(table, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.decoder = TransformerStack.from_dims(
            config, cross_attention=True, context_dim=context_dim, norm_eps=config.norm_eps
        )
        self.head = nn.Linear(dim, codebook_size)

    @property
    def num_tokens(self) -> int:
        """``N = T' * h * w`` codes per clip."""
        t, h, w = self.grid
        return t * h * w

    def positions(self) -> Tensor:
        """``[N, dim]`` embedding of every grid position, flattened time-major."""
        table = (
            self.time_embed[:, None, None] + self.row_embed[None, :, None] + self.col_embed[None]
        )  # (T', h, w, dim)
        return table.reshape(self.num_tokens, -1)

    def embed(self, inputs: Tensor, start: int = 0) -> Tensor:
        """``[B, L]`` input ids at positions ``start ..`` -> ``[B, L, dim]``."""
        end = start + inputs.shape[1]
        if end > self.num_tokens:
            raise ValueError(f"input reaches position {end}; a clip has {self.num_tokens} codes")
        embedded: Tensor = self.drop(self.token_embed(inputs) + self.positions()[start:end])
        return embedded

    def logits(
        self,
        inputs: Tensor,
        condition: EncoderOutput,
        cache: Cache | None = None,
        start: int = 0,
    ) -> Tensor:
        """Next-code logits.

        Args:
            inputs: ``[B, L]`` ids (BOS first when ``start == 0``).
            condition: ``tokens [B, S, C]`` and ``mask [B, S]`` cross-attended to.
            cache: per-layer caches from ``self.decoder.new_cache()`` for incremental decoding.
            start: position of ``inputs[:, 0]`` (the number of cached positions).

        Returns:
            ``[B, L, K]``; row ``i`` scores code ``start + i``.
        """
        hidden = self.decoder(
            self.embed(inputs, start),
            context=condition.tokens,
            context_mask=condition.mask,
            causal=True,
            cache=cache,
        )
        out: Tensor = self.head(hidden)
        return out

    def shift(self, codes: Tensor) -> Tensor:
        """Teacher-forcing input: ``[B, N]`` codes -> ``[B, N]`` BOS + codes[:, :-1]."""
        bos = codes.new_full((codes.shape[0], 1), self.bos_id)
        return torch.cat([bos, codes[:, :-1]], dim=1)

    def forward(self, condition: EncoderOutput, codes: Tensor) -> Tensor:
        """Teacher-forced logits ``[B, N, K]`` for the flat code sequence ``[B, N]``."""
        return self.logits(self.shift(codes), condition)

    @torch.no_grad()
    def sample(
        self,
        condition: EncoderOutput,
        options: SamplingOptions,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Draw a whole code sequence per condition (call in eval mode).

        Args:
            condition: ``tokens [B, S, C]``, ``mask [B, S]``.
            options: temperature, top-k/top-p and guidance scale.
            generator: random source; None uses torch's global generator.
            use_cache: reuse keys/values between steps (same codes, far fewer FLOPs).

        Returns:
            ``[B, N]`` long codes.
        """
        batch = condition.tokens.shape[0]
        # Guidance runs the conditional and unconditional rows as one batch of 2B.
        context = _stack(condition, null_condition(condition)) if options.guided else condition
        rows = context.tokens.shape[0]
        # One id buffer for every prefix (no per-step concatenation) and a static KV cache.
        ids = torch.full(
            (rows, self.num_tokens + 1),
            self.bos_id,
            dtype=torch.long,
            device=condition.tokens.device,
        )
        cache = self.decoder.new_cache(self.num_tokens) if use_cache else None
        for step in range(self.num_tokens):
            if cache is not None:
                logits = self.step(ids[:, step : step + 1], context, cache, step)
            else:
                logits = self.logits(ids[:, : step + 1], context)[:, -1]
            if options.guided:
                logits = guide(logits[:batch], logits[batch:], options.guidance)
            token = sample_next(logits, options, generator)  # (B,)
            ids[:, step + 1] = token.repeat(rows // batch)
        return ids[:batch, 1:]

    def step(self, inputs: Tensor, condition: EncoderOutput, cache: Cache, start: int) -> Tensor:
        """Logits ``[B, K]`` of code ``start`` from input ``[B, 1]`` at position ``start``, with
        ``cache`` holding positions ``0 .. start - 1`` (:meth:`logits` with the cache, through the
        lean fused step, :func:`omnifuse.layers.fused_step.fused_decoder`, in eval mode)."""
        if not steps_leanly(self.decoder, self.head):
            return self.logits(inputs, condition, cache, start)[:, -1]
        # The condition's keys/values and mask are cached at the first step.
        mask = needed_mask(condition.mask) if start == 0 else None
        step = fused_decoder(self.decoder, self.head, check=start == 0)  # same as decoder.step
        return step(self.embed(inputs, start)[:, -1], cache, condition.tokens, mask)
