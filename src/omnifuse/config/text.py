"""Text tower configs: tokenizer, native Transformer encoder, Hugging Face adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims


class TokenizerConfig(StrictModel):
    """How text becomes token ids.

    ``byte`` needs no training (256 byte ids + specials); ``bpe``/``wordpiece`` are trained with
    HF ``tokenizers`` on ``corpus`` unless ``path`` points at a saved ``tokenizer.json`` (which
    takes precedence, for ``byte`` too); ``pretrained`` loads a local HF tokenizer directory from
    ``path`` (``vocab_size`` and ``lowercase`` then come from that directory).
    """

    type: Literal["byte", "bpe", "wordpiece", "pretrained"] = "byte"
    vocab_size: int = Field(default=2000, gt=0, description="Target vocabulary size when training.")
    path: Path | None = Field(default=None, description="tokenizer.json file or HF tokenizer dir.")
    corpus: list[Path] = Field(default_factory=list, description="Text files to train on.")
    max_length: int = Field(default=64, gt=1, description="Truncate longer texts (tokens).")
    max_chars: int = Field(
        default=100_000,
        gt=0,
        description="Refuse texts longer than this many characters before tokenizing them "
        "(tokens past max_length are dropped anyway; this bounds the tokenizer's work).",
    )
    lowercase: bool = True

    @model_validator(mode="after")
    def _needs_source(self) -> TokenizerConfig:
        if self.type == "pretrained" and self.path is None:
            raise ValueError(
                "tokenizer.type='pretrained' needs tokenizer.path (a local HF directory)"
            )
        if self.type in ("bpe", "wordpiece") and self.path is None and not self.corpus:
            raise ValueError(
                f"tokenizer.type={self.type!r} needs tokenizer.path (a saved tokenizer.json) or "
                "tokenizer.corpus (text files to train on); or use tokenizer.type='byte', "
                "which needs no training"
            )
        return self


class TextTransformerConfig(TransformerDims):
    """Native Transformer text encoder (BERT-compatible when ``norm_first=False``)."""

    type: Literal["transformer"] = "transformer"
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    max_positions: int = Field(default=128, gt=0, description="Learned position table length.")
    type_vocab_size: int = Field(default=0, ge=0, description=">0 adds BERT token-type embeddings.")
    norm_first: bool = True
    norm_eps: float = 1e-5
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    pooling: Literal["cls", "mean"] = "mean"
    pretrained: Path | None = Field(
        default=None,
        description="Local HF BERT directory converted into this encoder (dims must match).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TextTransformerConfig:
        if self.tokenizer.max_length > self.max_positions:
            raise ValueError(
                f"tokenizer.max_length={self.tokenizer.max_length} exceeds "
                f"max_positions={self.max_positions}: raise max_positions or lower max_length"
            )
        if self.pretrained is not None and self.tokenizer.type != "pretrained":
            # A checkpoint's embedding rows only mean something with its own vocabulary.
            raise ValueError(
                f"pretrained={str(self.pretrained)!r} needs the checkpoint's tokenizer, not "
                f"tokenizer.type={self.tokenizer.type!r}: set tokenizer.type='pretrained' and "
                f"tokenizer.path={str(self.pretrained)!r}"
            )
        return self


class TextHFConfig(StrictModel):
    """Adapter around any local Hugging Face ``AutoModel`` directory (e.g. MiniLM)."""

    type: Literal["hf"] = "hf"
    path: Path = Field(description="Local HF model directory (config.json + weights + tokenizer).")
    tokenizer: Path | None = Field(
        default=None, description="Local HF tokenizer directory; defaults to ``path``."
    )
    pooling: Literal["cls", "mean"] = "mean"
    max_length: int | None = Field(
        default=None,
        gt=1,
        description="Truncate longer texts (tokens); default: the model's "
        "max_position_embeddings, at most 512.",
    )
    freeze: bool = False


TextEncoderConfig = Annotated[TextTransformerConfig | TextHFConfig, Field(discriminator="type")]
