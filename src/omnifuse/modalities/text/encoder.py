"""Native Transformer text encoder: embeddings -> :class:`~omnifuse.layers.TransformerStack`.

With ``norm_first=False`` (post-norm, no final norm) the layout is BERT's, so a local HF BERT
checkpoint converts 1:1 (see :mod:`omnifuse.convert.hf_bert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from omnifuse.config.text import TextTransformerConfig
from omnifuse.convert.hf_bert import check_hf_bert_config, load_hf_bert
from omnifuse.layers.transformer import Activation, TransformerStack, masked_mean
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.modalities.text.processor import TextProcessor, build_text_processor
from omnifuse.registry import register_encoder

Pooling = Literal["cls", "mean"]
_POOLINGS = ("cls", "mean")


class TextEmbeddings(nn.Module):
    """Token + learned position (+ token-type) embeddings, then LayerNorm and dropout (BERT).

    Args:
        vocab_size: rows of the token table.
        dim: embedding width.
        max_positions: longest sequence supported.
        type_vocab_size: rows of the token-type table; 0 leaves it out.
        norm_eps: LayerNorm epsilon.
        dropout: dropout after the norm.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        max_positions: int,
        type_vocab_size: int = 0,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_positions, dim)
        self.token_type = nn.Embedding(type_vocab_size, dim) if type_vocab_size > 0 else None
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.drop = nn.Dropout(dropout)
        for module in (self.token, self.position, self.token_type):
            if module is not None:
                # BERT's initialisation: N(0, 1) rows would swamp the position signal.
                nn.init.trunc_normal_(module.weight, std=0.02)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """``[B, L]`` ids (and optional ``[B, L]`` type ids) -> ``[B, L, dim]``."""
        length = input_ids.shape[1]
        if length > self.position.num_embeddings:
            raise ValueError(
                f"sequence of {length} tokens exceeds max_positions={self.position.num_embeddings}"
            )
        x = self.token(input_ids) + self.position.weight[:length]  # (B, L, D) + (L, D)
        if self.token_type is not None:
            types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            x = x + self.token_type(types)
        return self.drop(self.norm(x))  # type: ignore[no-any-return]


class TextTransformer(Encoder):
    """Bidirectional Transformer over token ids, pooled by ``[CLS]`` or masked mean.

    Consumes the batch of :class:`TextProcessor` (``input_ids`` ``[B, L]`` long,
    ``attention_mask`` ``[B, L]`` bool); other keys are ignored, except an optional
    ``token_type_ids`` ``[B, L]`` when ``type_vocab_size > 0``.

    Args:
        vocab_size: token-table rows (the tokenizer's ``vocab_size``).
        dim: model width.
        num_layers: Transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width as a multiple of ``dim``.
        dropout: dropout on embeddings, residual branches and attention.
        max_positions: length of the learned position table.
        type_vocab_size: >0 adds BERT token-type embeddings.
        norm_first: pre-norm with a final LayerNorm when True; post-norm without one (BERT)
            when False.
        norm_eps: LayerNorm epsilon (BERT checkpoints use 1e-12).
        activation: MLP activation.
        pooling: ``"cls"`` (first position) or ``"mean"`` (mean over valid positions).
    """

    modality: ClassVar[str] = "text"

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        max_positions: int = 128,
        type_vocab_size: int = 0,
        norm_first: bool = True,
        norm_eps: float = 1e-5,
        activation: Activation = "gelu",
        pooling: Pooling = "mean",
    ) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling={pooling!r}; valid choices: {', '.join(_POOLINGS)}")
        self.dim = dim
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.embeddings = TextEmbeddings(
            vocab_size, dim, max_positions, type_vocab_size, norm_eps, dropout
        )
        self.transformer = TransformerStack(
            dim,
            num_layers,
            num_heads,
            mlp_ratio,
            dropout,
            norm_first=norm_first,
            norm_eps=norm_eps,
            activation=activation,
            final_norm=norm_first,
        )

    @classmethod
    def from_config(cls, config: TextTransformerConfig, vocab_size: int) -> TextTransformer:
        """Architecture from the config section; ``vocab_size`` comes from the tokenizer."""
        return cls(
            vocab_size,
            dim=config.dim,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            dropout=config.dropout,
            max_positions=config.max_positions,
            type_vocab_size=config.type_vocab_size,
            norm_first=config.norm_first,
            norm_eps=config.norm_eps,
            activation=config.activation,
            pooling=config.pooling,
        )

    def forward_features(
        self, input_ids: Tensor, mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """``[B, L]`` ids and ``[B, L]`` bool mask -> ``[B, L, dim]`` token features."""
        x = self.embeddings(input_ids, token_type_ids)
        tokens: Tensor = self.transformer(x, mask=mask)
        return tokens

    def pool(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``[B, L, dim]`` tokens -> ``[B, dim]`` by ``[CLS]`` or masked mean."""
        if self.pooling == "cls":
            return tokens[:, 0]
        return masked_mean(tokens, mask)

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Encode a text batch; see the class docstring for the keys."""
        if "input_ids" not in inputs:
            raise KeyError(f"text batch needs 'input_ids'; got keys {sorted(inputs)}")
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
        tokens = self.forward_features(input_ids, mask, inputs.get("token_type_ids"))
        return EncoderOutput(tokens=tokens, mask=mask, pooled=self.pool(tokens, mask))


def _text_processor(processor: Processor[Any]) -> TextProcessor:
    if not isinstance(processor, TextProcessor):
        raise TypeError(f"the text encoder needs a TextProcessor, got {type(processor).__name__}")
    return processor


@register_encoder(
    "text",
    "transformer",
    processor=build_text_processor,
    description="Native Transformer text encoder (BERT-compatible; converts local HF BERT).",
)
def build_text_transformer(
    config: TextTransformerConfig, processor: Processor[Any], pretrained: bool
) -> Encoder:
    """Build the encoder; with ``pretrained`` and ``config.pretrained`` load that HF BERT.

    Raises:
        ValueError: the HF checkpoint's dimensions or vocabulary differ from ``config``.
    """
    vocab_size = _text_processor(processor).tokenizer.vocab_size
    source = config.pretrained if pretrained else None
    if source is not None:
        check_hf_bert_config(config, vocab_size, source)  # fail before allocating the model
    encoder = TextTransformer.from_config(config, vocab_size)
    if source is not None:
        load_hf_bert(encoder, source)
    return encoder
