"""Masked-language-modelling head: per-token logits over the text vocabulary (BERT)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.config.heads import MLMHeadConfig
from omnifuse.heads._text import text_tokenizer
from omnifuse.modalities.base import EncoderOutput
from omnifuse.registry import HeadContext, register_head


class MLMHead(nn.Module):
    """``[B, N, D]`` tokens -> ``[B, N, V]`` logits: dense + GELU + LayerNorm + linear (BERT).

    Args:
        in_dim: width of the tokens read (text encoder or fusion).
        vocab_size: ``V``, rows of the text tokenizer's vocabulary.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(self, in_dim: int, vocab_size: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, in_dim)
        self.norm = nn.LayerNorm(in_dim, eps=norm_eps)
        self.decoder = nn.Linear(in_dim, vocab_size)

    def forward(self, features: EncoderOutput) -> Tensor:
        """Logits ``[B, N, V]`` for every token of ``features.tokens`` ``[B, N, D]``."""
        logits: Tensor = self.decoder(self.norm(F.gelu(self.dense(features.tokens))))
        return logits


@register_head("mlm", "Masked-LM logits over the text vocabulary, per token.", context=True)
def build_mlm(config: MLMHeadConfig, context: HeadContext) -> nn.Module:
    """Registry builder: the vocabulary size comes from the text tokenizer."""
    vocab_size = text_tokenizer(context, "mlm").vocab_size
    return MLMHead(context.in_dim, vocab_size, config.norm_eps)
