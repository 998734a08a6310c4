"""Hugging Face ViT -> omnifuse ViT: parity through the registry builder, and error reporting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ViTConfig as HFViTConfig
from transformers import ViTModel

from omnifuse.config.image import ViTConfig
from omnifuse.convert.hf_vit import load_hf_vit, map_hf_vit_state_dict, vit_config_from_hf
from omnifuse.modalities.image import ViT
from omnifuse.registry import encoder_spec

# The tiny_hf_vit_dir fixture: 32x32 images, patch 8, dim 32, 2 layers, 4 heads, MLP 64.
TINY = {
    "dim": 32,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "patch_size": 8,
    "norm_eps": 1e-12,
    "processor": {"image_size": 32},
}


def config_for(directory: Path, **fields: Any) -> ViTConfig:
    return ViTConfig.model_validate({**TINY, "pretrained": str(directory), **fields})


def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def hf_outputs(directory: Path, x: torch.Tensor) -> Any:
    model = ViTModel.from_pretrained(directory, add_pooling_layer=False).eval()
    with torch.no_grad():
        return model(pixel_values=x, output_hidden_states=True)


def test_parity_with_transformers_through_registry(tiny_hf_vit_dir: Path) -> None:
    spec = encoder_spec("image", "vit")
    config = config_for(tiny_hf_vit_dir)
    encoder = spec.build_encoder(config, spec.build_processor(config), True).eval()
    x = pixels()
    reference = hf_outputs(tiny_hf_vit_dir, x)
    with torch.no_grad():
        out = encoder({"pixel_values": x})
    torch.testing.assert_close(out.tokens, reference.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pooled, reference.last_hidden_state[:, 0], atol=1e-5, rtol=0)
    assert isinstance(encoder, ViT)
    with torch.no_grad():
        _, hidden = encoder.blocks(encoder.embed(x), return_hidden=True)
    assert len(hidden) == len(reference.hidden_states) == 3
    for ours, theirs in zip(hidden, reference.hidden_states, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_pretrained_false_builds_architecture_only(tiny_hf_vit_dir: Path) -> None:
    spec = encoder_spec("image", "vit")
    config = config_for(tiny_hf_vit_dir)
    encoder = spec.build_encoder(config, spec.build_processor(config), False).eval()
    assert isinstance(encoder, ViT)
    hf_cls = load_file(tiny_hf_vit_dir / "model.safetensors")["embeddings.cls_token"]
    assert not torch.allclose(encoder.cls_token, hf_cls)


def test_config_from_hf_dir(tiny_hf_vit_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "vit"
    shutil.copytree(tiny_hf_vit_dir, directory)
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    )
    config = vit_config_from_hf(directory, pooling="mean")
    assert config.model_dump(include=set(TINY) - {"processor"}) == {
        k: v for k, v in TINY.items() if k != "processor"
    }
    assert config.processor.image_size == 32 and config.processor.mean == (0.5, 0.5, 0.5)
    assert config.pooling == "mean" and config.pretrained == directory
    model = ViT(config)
    load_hf_vit(model, directory)  # must not raise: the derived config matches


def test_mismatch_names_every_field_with_both_values(tiny_hf_vit_dir: Path) -> None:
    config = config_for(
        tiny_hf_vit_dir, dim=64, num_layers=3, mlp_ratio=4.0, norm_eps=1e-6, patch_size=16
    )
    with pytest.raises(ValueError) as info:
        load_hf_vit(ViT(config), tiny_hf_vit_dir)
    message = str(info.value)
    assert str(tiny_hf_vit_dir) in message
    for line in (
        "dim: config 64 vs HF hidden_size 32",
        "num_layers: config 3 vs HF num_hidden_layers 2",
        "patch_size: config 16 vs HF patch_size 8",
        "mlp_ratio: config 4.0 (MLP width 256) vs HF intermediate_size 64",
        "norm_eps: config 1e-06 vs HF layer_norm_eps 1e-12",
    ):
        assert line in message
    assert "num_heads" not in message  # matching fields are not reported


def test_transformers5_names_and_prefixes_map_the_same(tiny_hf_vit_dir: Path) -> None:
    on_disk = map_hf_vit_state_dict(load_file(tiny_hf_vit_dir / "model.safetensors"))
    hf = ViTModel.from_pretrained(tiny_hf_vit_dir, add_pooling_layer=False)
    in_memory = map_hf_vit_state_dict(hf.state_dict())  # module names of this transformers
    prefixed = {f"vit.{k}": v for k, v in load_file(tiny_hf_vit_dir / "model.safetensors").items()}
    prefixed["classifier.weight"] = torch.zeros(10, 32)
    for mapped in (in_memory, map_hf_vit_state_dict(prefixed)):
        assert sorted(mapped) == sorted(on_disk)
        for key, value in on_disk.items():
            torch.testing.assert_close(mapped[key], value)
    assert set(on_disk) == set(ViT(config_for(tiny_hf_vit_dir)).state_dict())


def test_checkpoint_without_qkv_bias(tmp_path: Path) -> None:
    hf_config = HFViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=8,
        qkv_bias=False,
        hidden_act="gelu_pytorch_tanh",
    )
    ViTModel(hf_config, add_pooling_layer=False).eval().save_pretrained(tmp_path)
    config = vit_config_from_hf(tmp_path)
    assert config.activation == "gelu_tanh"
    model = ViT(config).eval()
    load_hf_vit(model, tmp_path)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ours = model({"pixel_values": x}).tokens
    theirs = hf_outputs(tmp_path, x).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_missing_and_unexpected_weights(tiny_hf_vit_dir: Path, tmp_path: Path) -> None:
    state = load_file(tiny_hf_vit_dir / "model.safetensors")
    shutil.copy(tiny_hf_vit_dir / "config.json", tmp_path / "config.json")
    save_file(
        {k: v for k, v in state.items() if k != "layernorm.weight"}, tmp_path / "model.safetensors"
    )
    with pytest.raises(ValueError, match=r"lacks weights for \['blocks.norm.weight'\]"):
        load_hf_vit(ViT(config_for(tmp_path)), tmp_path)
    save_file(
        {**state, "encoder.layer.0.adapter.weight": torch.zeros(2)}, tmp_path / "model.safetensors"
    )
    with pytest.raises(ValueError, match=r"unexpected weight 'encoder\.layer\.0\.adapter\.weight'"):
        load_hf_vit(ViT(config_for(tmp_path)), tmp_path)


def test_not_a_vit_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        vit_config_from_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type='bert'; expected 'vit'"):
        vit_config_from_hf(tmp_path)
