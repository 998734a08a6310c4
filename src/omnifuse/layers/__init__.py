"""Modality-agnostic building blocks: attention, Transformer blocks/stacks, pooling, positions."""

from omnifuse.layers.attention import KVCache, MultiHeadAttention, StaticKVCache
from omnifuse.layers.transformer import (
    MLP,
    StackDims,
    TransformerBlock,
    TransformerStack,
    masked_mean,
    sinusoidal_positions,
)

__all__ = [
    "MLP",
    "KVCache",
    "MultiHeadAttention",
    "StackDims",
    "StaticKVCache",
    "TransformerBlock",
    "TransformerStack",
    "masked_mean",
    "sinusoidal_positions",
]
