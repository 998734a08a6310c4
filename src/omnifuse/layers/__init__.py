"""Modality-agnostic building blocks: attention, Transformer blocks/stacks, pooling, positions."""

from omnifuse.layers.attention import KVCache, MultiHeadAttention
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
    "TransformerBlock",
    "TransformerStack",
    "masked_mean",
    "sinusoidal_positions",
]
