"""Transformer stacks: ``from_dims`` equals the constructor; post-norm stacks end unnormalised."""

from __future__ import annotations

import torch
from torch import nn

from omnifuse.config.heads import CaptionDecoderConfig
from omnifuse.config.image import ViTConfig
from omnifuse.layers import TransformerStack, masked_mean


def test_from_dims_builds_the_constructors_stack() -> None:
    config = CaptionDecoderConfig(dim=32, num_layers=2, num_heads=4, mlp_ratio=2.0, dropout=0.1)
    torch.manual_seed(0)
    built = TransformerStack.from_dims(config, cross_attention=True, context_dim=24, norm_eps=1e-6)
    torch.manual_seed(0)
    expected = TransformerStack(32, 2, 4, 2.0, 0.1, True, 24, norm_eps=1e-6)
    # Same names, shapes and seeded values: checkpoints of either load into the other.
    assert built.state_dict().keys() == expected.state_dict().keys()
    for name, value in expected.state_dict().items():
        assert torch.equal(built.state_dict()[name], value), name


def test_post_norm_stack_has_no_final_norm() -> None:
    config = ViTConfig(dim=32, num_layers=1, num_heads=2, norm_first=False)
    stack = TransformerStack.from_dims(config, norm_first=config.norm_first)
    assert isinstance(stack.norm, nn.Identity) and not stack.layers[0].norm_first
    assert isinstance(TransformerStack.from_dims(config).norm, nn.LayerNorm)


def test_masked_mean_skips_padding_and_empty_rows() -> None:
    tokens = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_mean(tokens, mask).flatten().tolist() == [2.0, 0.0]
