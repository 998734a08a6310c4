"""ViT encoder contract: shapes, pooling, gradients, determinism, registry round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from omnifuse.config.image import ViTConfig
from omnifuse.modalities.image import ImageProcessor, ViT
from omnifuse.registry import encoder_spec


def tiny(**fields: Any) -> ViTConfig:
    base: dict[str, Any] = {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "patch_size": 8,
        "processor": {"image_size": 32},
    }
    return ViTConfig.model_validate({**base, **fields})


def pixels(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_output_shapes_and_mask() -> None:
    out = ViT(tiny()).eval()({"pixel_values": pixels()})
    assert out.tokens.shape == (2, 1 + 16, 32)
    assert out.mask.dtype == torch.bool and out.mask.shape == (2, 17) and bool(out.mask.all())
    assert out.pooled.shape == (2, 32)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling(pooling: str) -> None:
    out = ViT(tiny(pooling=pooling)).eval()({"pixel_values": pixels()})
    expected = out.tokens[:, 0] if pooling == "cls" else out.tokens[:, 1:].mean(dim=1)
    torch.testing.assert_close(out.pooled, expected)


def test_every_parameter_gets_a_gradient() -> None:
    model = ViT(tiny(pooling="mean", dropout=0.1)).train()
    out = model({"pixel_values": pixels()})
    (out.tokens.pow(2).mean() + out.pooled.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_deterministic_and_batch_independent() -> None:
    model = ViT(tiny()).eval()
    x = pixels(3)
    first = model({"pixel_values": x})
    torch.testing.assert_close(model({"pixel_values": x}).tokens, first.tokens)
    alone = model({"pixel_values": x[1:2]})
    torch.testing.assert_close(alone.tokens[0], first.tokens[1], atol=1e-5, rtol=1e-4)


def test_ignores_unknown_keys_and_names_missing_ones() -> None:
    model = ViT(tiny()).eval()
    x = pixels()
    plain = model({"pixel_values": x})
    extra = model({"pixel_values": x, "present": torch.tensor([True, False])})
    torch.testing.assert_close(extra.tokens, plain.tokens)
    with pytest.raises(KeyError, match="needs batch key 'pixel_values'; got keys \\['images'\\]"):
        model({"images": x})


def test_wrong_image_size_is_explained() -> None:
    with pytest.raises(ValueError, match=r"expected \[B, 3, 32, 32\]"):
        ViT(tiny())({"pixel_values": torch.zeros(1, 3, 48, 48)})


def test_gradient_checkpointing_keeps_outputs() -> None:
    model = ViT(tiny()).train()
    x = pixels()
    ref = model({"pixel_values": x}).pooled
    ref.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_gradient_checkpointing(True)
    out = model({"pixel_values": x}).pooled
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name])


def test_post_norm_variant_runs() -> None:
    out = ViT(tiny(norm_first=False)).eval()({"pixel_values": pixels()})
    assert torch.isfinite(out.tokens).all()
    # Post-norm blocks end in a LayerNorm: each token is normalised.
    torch.testing.assert_close(out.tokens.mean(-1), torch.zeros(2, 17), atol=1e-5, rtol=0)


def test_registry_builds_encoder_and_processor(media: dict[str, Callable[..., Path]]) -> None:
    spec = encoder_spec("image", "vit")
    config = tiny()
    processor = spec.build_processor(config)
    assert isinstance(processor, ImageProcessor)
    encoder = spec.build_encoder(config, processor, True)  # no `pretrained` path: random init
    assert isinstance(encoder, ViT) and encoder.modality == "image" and encoder.dim == 32
    batch = processor([media["png"]("a.png"), media["png"]("b.png", size=(60, 30))])
    out = encoder.eval()(batch)
    assert out.tokens.shape == (2, 17, 32)


def test_conv_stem_keeps_the_token_grid_and_ignores_the_rest_of_the_batch() -> None:
    from omnifuse.layers.stem import stem_widths

    assert stem_widths(128, 8) == [32, 64, 128]
    vit = ViT(tiny(stem="conv")).eval()
    assert isinstance(vit.patch_embed, torch.nn.Sequential)
    x = pixels(2)
    grid = vit.patch_embed(x)
    assert grid.shape == (2, 32, 4, 4)  # the grid of the 8x8 patch conv
    # GroupNorm(1) normalises each image on its own: no batch statistics leak between samples.
    alone = vit.patch_embed(x[:1])
    other = vit.patch_embed(torch.cat([x[:1], 10 * x[1:]]))
    torch.testing.assert_close(alone[0], grid[0])
    torch.testing.assert_close(other[0], grid[0])


def test_conv_stem_config_errors_name_the_field() -> None:
    with pytest.raises(
        ValueError, match=r"stem='conv' needs a power-of-two patch_size.*got patch_size=6"
    ):
        tiny(stem="conv", patch_size=6, processor={"image_size": 36})
    with pytest.raises(ValueError, match="pretrained HF ViT weights"):
        tiny(stem="conv", pretrained="/some/hf/vit")
    with pytest.raises(ValueError, match="stem"):
        tiny(stem="resnet")
