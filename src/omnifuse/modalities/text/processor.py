"""Text processor: strings -> ``[CLS] ... [SEP]`` ids -> padded ``input_ids``/``attention_mask``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from omnifuse.config.text import TextTransformerConfig, TokenizerConfig
from omnifuse.modalities.base import MediaError, Processor
from omnifuse.modalities.text.tokenizer import TextTokenizer, load_tokenizer

_PREVIEW = 40
DEFAULT_MAX_CHARS = TokenizerConfig.model_fields["max_chars"].default


def _describe(raw: Any) -> str:
    """Short printable name of a raw input for :class:`MediaError` (texts have no path)."""
    text = repr(raw)
    return text if len(text) <= _PREVIEW else f"{text[:_PREVIEW]}..."


class TextProcessor(Processor[list[int]]):
    """Tokenizes strings and pads them into the text batch.

    Batch keys: ``input_ids`` ``[B, L]`` long (padded with ``tokenizer.pad_id``) and
    ``attention_mask`` ``[B, L]`` bool (True at real tokens). Text has no augmentation, so
    ``train()``/``eval()`` change nothing.

    Args:
        tokenizer: any :class:`TextTokenizer`.
        max_length: longest sequence in tokens, special tokens included.
        max_chars: longest text accepted, checked before tokenizing (``tokenizer.max_chars``).
    """

    modality: ClassVar[str] = "text"

    def __init__(
        self, tokenizer: TextTokenizer, max_length: int, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length={max_length} must be at least 2 (room for [CLS] [SEP])")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_chars = max_chars

    def load(self, raw: Any) -> list[int]:
        """One string -> its ids with the special-token template, truncated to ``max_length``.

        Raises:
            MediaError: ``raw`` is not a string, holds only whitespace or is longer than
                ``max_chars``.
        """
        if not isinstance(raw, str):
            raise MediaError(_describe(raw), f"expected a text string, got {type(raw).__name__}")
        if len(raw) > self.max_chars:
            raise MediaError(
                _describe(raw),
                f"text has {len(raw):,} characters, more than tokenizer.max_chars="
                f"{self.max_chars:,}; shorten it or raise the limit",
            )
        if not raw.strip():
            raise MediaError(_describe(raw), "empty text")
        return self.tokenizer.encode_for_model(raw, self.max_length)

    def collate(self, samples: Sequence[list[int]]) -> dict[str, Tensor]:
        """Pad to the longest sample: ``input_ids`` ``[B, L]`` long, ``attention_mask`` bool."""
        if not samples:
            raise ValueError("cannot collate an empty list of text samples")
        length = max(len(ids) for ids in samples)
        input_ids = torch.full((len(samples), length), self.tokenizer.pad_id, dtype=torch.long)
        attention_mask = torch.zeros(len(samples), length, dtype=torch.bool)
        for row, ids in enumerate(samples):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = True
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the tokenizer into ``directory``; returns ``{"tokenizer": {"path": ...}}``
        (nothing for the untrained byte tokenizer, which its config rebuilds)."""
        updates = self.tokenizer.save(directory)
        return {"tokenizer": updates} if updates else {}


def build_text_processor(config: TextTransformerConfig) -> TextProcessor:
    """The processor of the native text encoder, from its ``tokenizer`` section."""
    tokens = config.tokenizer
    return TextProcessor(load_tokenizer(tokens), tokens.max_length, tokens.max_chars)
