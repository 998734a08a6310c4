"""Caption decoder head: a causal Transformer cross-attending to fused tokens (captioning, ASR).

Trained with teacher forcing (``forward(features, decoder_input)`` gives logits); at inference
:meth:`CaptionDecoder.generate` decodes greedily with a KV cache. Called with features only, as
:class:`~omnifuse.models.MultimodalModel` calls every head, it returns greedy token ids.

The incremental-decoding hooks :meth:`~CaptionDecoder.new_cache`, :meth:`~CaptionDecoder.step`
and :meth:`~CaptionDecoder.reorder_cache` are what ``omnifuse.heads.decoding`` needs for beam
search and nucleus sampling; any decoder offering them (plus ``bos_id``/``eos_id``/``pad_id``/
``max_length``) can be decoded the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from omnifuse.config.heads import CaptionDecoderConfig
from omnifuse.heads._text import text_tokenizer
from omnifuse.heads.decoding import DecoderStepper, TokenIds, greedy_search
from omnifuse.layers import TransformerStack
from omnifuse.layers.attention import needed_mask
from omnifuse.layers.fused_step import fused_decoder
from omnifuse.layers.transformer import LayerCache, steps_leanly
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import HeadContext, register_head

Cache = Sequence[LayerCache]
"""Per-layer caches (a list from ``new_cache``; read-only here, so any sequence)."""


class CaptionDecoder(nn.Module):
    """Token embedding + learned positions + causal cross-attending Transformer + LM projection.

    Args:
        context_dim: width of the tokens cross-attended to (fusion ``dim`` or an encoder's).
        vocab_size: ``V``, the text tokenizer's vocabulary size.
        config: decoder width, depth, heads, ``max_length`` and weight tying.
        bos_id: id that starts every decoded sequence.
        eos_id: id that ends a sequence.
        pad_id: id written after a sequence has ended.
    """

    def __init__(
        self,
        context_dim: int,
        vocab_size: int,
        config: CaptionDecoderConfig,
        bos_id: int,
        eos_id: int,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.max_length = config.max_length
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.token_embed = nn.Embedding(vocab_size, config.dim)
        # GPT-2's scale: N(0, 1) rows would give tied output logits of size ~sqrt(dim).
        nn.init.normal_(self.token_embed.weight, std=0.02)
        self.pos_embed = nn.Parameter(torch.zeros(config.max_length, config.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.decoder = TransformerStack.from_dims(
            config, cross_attention=True, context_dim=context_dim, norm_eps=config.norm_eps
        )
        self.lm_head = nn.Linear(config.dim, vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.token_embed.weight

    def embed(self, ids: Tensor, start: int = 0) -> Tensor:
        """``[B, L]`` ids at positions ``start .. start + L - 1`` -> ``[B, L, dim]``."""
        end = start + ids.shape[1]
        if end > self.max_length:
            raise ValueError(
                f"decoder input reaches position {end}, beyond max_length={self.max_length}; "
                "truncate the targets or raise the head's max_length"
            )
        embedded: Tensor = self.drop(self.token_embed(ids) + self.pos_embed[start:end])
        return embedded

    def logits(
        self,
        decoder_input: Tensor,
        context: EncoderOutput,
        decoder_mask: Tensor | None = None,
        cache: Cache | None = None,
        start: int = 0,
    ) -> Tensor:
        """Next-token logits.

        Args:
            decoder_input: ``[B, L]`` ids (BOS first when ``start == 0``).
            context: what to cross-attend to: ``tokens [B, S, C]`` and ``mask [B, S]``.
            decoder_mask: ``[B, start + L]`` bool, True at real decoder positions.
            cache: per-layer caches from ``self.decoder.new_cache()`` for incremental decoding.
            start: position of ``decoder_input[:, 0]`` (the number of cached positions).

        Returns:
            ``[B, L, V]``; position ``t`` scores the token after ``decoder_input[:, : t + 1]``.
        """
        return self._run(decoder_input, context.tokens, context.mask, decoder_mask, cache, start)

    def _run(
        self,
        decoder_input: Tensor,
        context: Tensor,
        context_mask: Tensor | None,
        decoder_mask: Tensor | None,
        cache: Cache | None,
        start: int,
    ) -> Tensor:
        """:meth:`logits` with the context as ``[B, S, C]`` tokens and an optional mask."""
        hidden = self.decoder(
            self.embed(decoder_input, start),
            mask=decoder_mask,
            context=context,
            context_mask=context_mask,
            causal=True,
            cache=cache,
        )
        out: Tensor = self.lm_head(hidden)
        return out

    def forward(
        self,
        features: EncoderOutput,
        decoder_input: Tensor | None = None,
        decoder_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``[B, L, V]``; without ``decoder_input``, greedy ids ``[B, T]``."""
        if decoder_input is None:
            return self.generate(features)
        return self.logits(decoder_input, features, decoder_mask)

    @torch.no_grad()
    def generate(
        self,
        fused: EncoderOutput,
        max_length: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Greedy decoding (call in eval mode; dropout would make it random).

        Runs :func:`omnifuse.heads.decoding.greedy_search` with a static KV cache.

        Args:
            fused: context with ``tokens [B, S, C]`` and ``mask [B, S]``.
            max_length: most tokens to produce (default and cap: the head's ``max_length``).
            bos_id: start id (default: the tokenizer's BOS).
            eos_id: stop id (default: the tokenizer's EOS).
            use_cache: reuse keys/values between steps (same tokens, fewer FLOPs).

        Returns:
            ``[B, T]`` ids without BOS, ``T <= max_length``; a row's EOS is kept and followed by
            ``pad_id``. Decoding stops early once every row has produced EOS.
        """
        steps = self.max_length if max_length is None else min(max_length, self.max_length)
        ids = TokenIds(
            self.bos_id if bos_id is None else bos_id,
            self.eos_id if eos_id is None else eos_id,
            self.pad_id,
        )
        stepper = DecoderStepper(self, fused, use_cache, static=True)
        with torch.inference_mode():  # as in decoding.decode: less bookkeeping per operation
            out = greedy_search(stepper, fused.tokens.shape[0], ids, steps, fused.tokens.device)
        return out.tokens.clone()  # an ordinary tensor again

    def new_cache(self, static: bool = False) -> Cache:
        """Empty per-layer (self, cross) key/value caches for :meth:`step`.

        Args:
            static: preallocate the self-attention keys/values for ``max_length`` positions
                (:class:`~omnifuse.layers.StaticKVCache`) instead of growing them each step.
        """
        return self.decoder.new_cache(self.max_length if static else None)

    def step(self, tokens: Tensor, cache: Cache | None, fused: EncoderOutput) -> Tensor:
        """Next-token logits after each prefix: one incremental decoding step.

        Args:
            tokens: ``[B, t]`` prefixes, BOS first.
            cache: ``None`` runs the whole prefix; a cache from :meth:`new_cache` that holds
                positions ``0 .. t - 2`` runs only the last token (and appends its keys/values).
            fused: context with ``tokens [B, S, C]`` and ``mask [B, S]``.

        Returns:
            ``[B, V]`` logits of the token after ``tokens``.
        """
        if cache is None:
            return self.logits(tokens, fused)[:, -1]
        start = tokens.shape[1] - 1
        cached = cache[0][0].length if cache else start
        if cached != start:
            # A mismatch would silently attend to stale or missing positions.
            raise ValueError(
                f"the cache holds {cached} positions but the prefix has {tokens.shape[1]} tokens; "
                "pass a cache holding every position but the last"
            )
        # The context mask is read once, at the first step (later ones reuse the cached one).
        mask = needed_mask(fused.mask) if start == 0 else None
        if steps_leanly(self.decoder, self.lm_head):
            # The fused step's weight copies are checked against the weights at a run's first step.
            step = fused_decoder(self.decoder, self.lm_head, check=start == 0)
            return step(self.embed(tokens[:, start:], start)[:, 0], cache, fused.tokens, mask)
        return self._run(tokens[:, start:], fused.tokens, mask, None, cache, start)[:, -1]

    @staticmethod
    def reorder_cache(cache: Cache, index: Tensor) -> Cache:
        """Keep rows ``index`` (``[N]`` long, repeats allowed) of every cached key/value.

        Beam search calls this when beams are expanded or reordered, so each row's cache keeps
        following its own prefix. Updates ``cache`` in place and returns it.
        """
        for self_attention, cross_attention in cache:
            self_attention.reorder(index)
            cross_attention.reorder(index)
        return cache


@register_head(
    "caption_decoder",
    "Causal Transformer decoder over fused tokens; teacher forcing + cached greedy decoding.",
    context=True,
)
def build_caption_decoder(config: CaptionDecoderConfig, context: HeadContext) -> nn.Module:
    """Registry builder: vocabulary and BOS/EOS/PAD ids come from the text tokenizer."""
    tokenizer = text_tokenizer(context, "caption_decoder")
    return CaptionDecoder(
        context.in_dim,
        tokenizer.vocab_size,
        config,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.pad_id,
    )
