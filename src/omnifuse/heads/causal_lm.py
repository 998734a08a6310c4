"""A local Hugging Face causal LM as the decoder (LLaVA-style).

The features the head reads (fused tokens or one modality's) go through a projector into the
LM's embedding width and are prepended to the LM's token embeddings; the LM then runs on
``inputs_embeds`` with an attention mask covering both. Training scores text positions only
(:meth:`CausalLMHead.forward` returns their logits); generation is the LM's own ``generate``
(greedy, beam or sampling, with its KV cache).

Every sequence is *compacted* before the LM sees it: the valid media tokens and the valid text
tokens of a row are moved together (padding to the right when training, to the left when
generating), so positions are ``0 .. n - 1`` in both cases and a masked media token (a missing
modality) never opens a hole the LM was not trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from omnifuse.config.heads import CausalLMHeadConfig
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.hf import copy_hf_assets, load_hf_model
from omnifuse.registry import HeadContext, register_head

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class LMInputs(NamedTuple):
    """One compacted LM batch.

    Attributes:
        embeds: ``[B, S, H]`` media then text embeddings of each row, padding on one side.
        mask: ``[B, S]`` bool, True at real positions.
        labels: ``[B, S]`` long, the labels moved with their positions (IGNORE_INDEX elsewhere);
            None when no labels were given.
    """

    embeds: Tensor
    mask: Tensor
    labels: Tensor | None


def compact(embeds: Tensor, mask: Tensor, labels: Tensor | None, left: bool) -> LMInputs:
    """Move each row's valid positions together, keeping their order.

    Args:
        embeds: ``[B, S, H]``.
        mask: ``[B, S]`` bool.
        labels: ``[B, S]`` or None.
        left: pad on the left (generation) instead of the right (training).
    """
    key = mask.int() if left else (~mask).int()
    order = torch.sort(key, dim=1, stable=True).indices  # (B, S): valid first (or last)
    gathered = embeds.gather(1, order[..., None].expand_as(embeds))
    moved = None if labels is None else labels.gather(1, order)
    return LMInputs(gathered, mask.gather(1, order), moved)


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer of the local LM directory ``path`` (a pad token is borrowed from EOS when
    it has none, as batched generation needs one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class CausalLMHead(nn.Module):
    """Projector + a transformers causal LM (weights saved inside the omnifuse checkpoint).

    Args:
        lm: an ``AutoModelForCausalLM`` model.
        tokenizer: its tokenizer (the chat template, EOS and PAD ids come from it).
        in_dim: width of the features the head reads.
        config: projector, pooling and length settings.
        source: the LM's HF directory, whose config and tokenizer files ``save_assets`` copies
            (None: nothing to copy).
    """

    def __init__(
        self,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        in_dim: int,
        config: CausalLMHeadConfig,
        source: Path | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.lm = lm.train()  # from_pretrained returns eval mode; the model's mode rules
        self.tokenizer = tokenizer
        width = int(cast(nn.Embedding, lm.get_input_embeddings()).embedding_dim)
        self.projector: nn.Module = (
            nn.Linear(in_dim, width)
            if config.projector == "linear"
            else nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))
        )
        self.pooling = config.pooling
        self.max_new_tokens, self.max_length = config.max_new_tokens, config.max_length
        if config.freeze_lm:
            self.lm.requires_grad_(False)

    def save_assets(self, directory: Path) -> dict[str, Any]:
        """Copy the LM directory's config, generation config and tokenizer files (not its
        weights: ``model.safetensors`` holds the fine-tuned LM) so the run is self-contained."""
        if self.source is None:
            return {}
        return {"path": copy_hf_assets(self.source, directory)}

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def prefix(self, features: EncoderOutput) -> tuple[Tensor, Tensor]:
        """Projected media positions ``[B, P, H]`` and their mask ``[B, P]``."""
        if self.pooling == "pooled":
            present = features.mask.any(dim=1, keepdim=True)  # (B, 1): a missing source is masked
            return self.projector(features.pooled[:, None]), present
        return self.projector(features.tokens), features.mask.bool()

    def inputs(
        self,
        features: EncoderOutput,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
        left: bool = False,
    ) -> LMInputs:
        """Media positions prepended to the embedded ``input_ids [B, L]``, compacted.

        ``labels [B, L]`` (text positions) get IGNORE_INDEX at the media positions.
        """
        media, media_mask = self.prefix(features)
        text = self.lm.get_input_embeddings()(input_ids)  # (B, L, H)
        embeds = torch.cat([media.to(text.dtype), text], dim=1)
        mask = torch.cat([media_mask, attention_mask.bool()], dim=1)
        full = None
        if labels is not None:
            ignore = labels.new_full(media_mask.shape, -100)
            full = torch.cat([ignore, labels], dim=1)
        return compact(embeds, mask, full, left)

    def run(self, batch: LMInputs) -> Tensor:
        """``[B, S, V]`` logits of a compacted batch (position ``t`` scores token ``t + 1``)."""
        out = self.lm(inputs_embeds=batch.embeds, attention_mask=batch.mask.long(), use_cache=False)
        logits: Tensor = out.logits
        return logits

    def forward(
        self,
        features: EncoderOutput,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits ``[B, S, V]`` over the compacted media + text positions.

        Without ``input_ids`` (how :class:`~omnifuse.models.MultimodalModel` calls every head)
        the text is the tokenizer's BOS (or EOS) alone.
        """
        if input_ids is None:
            start = self.tokenizer.bos_token_id
            start = self.eos_id if start is None else int(start)
            input_ids = torch.full(
                (features.tokens.shape[0], 1), start, device=features.tokens.device
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        return self.run(self.inputs(features, input_ids, attention_mask))

    @torch.no_grad()
    def generate(
        self,
        features: EncoderOutput,
        input_ids: Tensor,
        attention_mask: Tensor,
        **kwargs: Any,
    ) -> Tensor:
        """The LM's own ``generate`` after the media positions and the prompt.

        Args:
            features: what the head reads.
            input_ids: ``[B, L]`` prompt ids (padding anywhere, marked by ``attention_mask``).
            attention_mask: ``[B, L]``.
            kwargs: ``generate`` arguments (``do_sample``, ``num_beams``, ``max_new_tokens`` ...).

        Returns:
            ``[B, T]`` new token ids only (EOS kept, then PAD).
        """
        batch = self.inputs(features, input_ids, attention_mask, left=True)
        settings = {
            "max_new_tokens": self.max_new_tokens,
            "eos_token_id": self.eos_id,
            "pad_token_id": self.pad_id,
            **kwargs,
        }
        # With inputs_embeds and no input_ids, a decoder-only generate returns new tokens only.
        out: Tensor = self.lm.generate(
            inputs_embeds=batch.embeds, attention_mask=batch.mask.long(), **settings
        )
        return out


@register_head(
    "causal_lm",
    "A local HF causal LM as the decoder: projected media tokens prepended to its embeddings.",
    context=True,
)
def build_causal_lm(config: CausalLMHeadConfig, context: HeadContext) -> nn.Module:
    """Registry builder: the LM and its tokenizer from ``config.path`` (float32).

    The LM weights are read from ``config.path`` when ``context.pretrained``; loading a saved
    model builds the architecture only and fills it from ``model.safetensors`` (the whole LM).
    """
    path = Path(config.path)
    lm = load_hf_model(path, context.pretrained, class_name="AutoModelForCausalLM")
    return CausalLMHead(lm, load_tokenizer(path), context.in_dim, config, source=path)
