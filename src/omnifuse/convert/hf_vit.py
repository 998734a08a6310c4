"""Hugging Face ``ViTModel`` checkpoints (a local directory) -> :class:`omnifuse ViT <ViT>`.

Reads ``config.json`` and the safetensors weights (single file or sharded), checks every
architecture field against our :class:`~omnifuse.config.image.ViTConfig`, and maps the weights.
Both the classic checkpoint names (``encoder.layer.N.attention.attention.query``) and the module
names of transformers 5 (``layers.N.attention.q_proj``) are understood; a ``vit.`` prefix (from
``ViTForImageClassification``) is stripped and pooler/classifier weights are ignored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import Tensor

from omnifuse.config.image import ViTConfig


class ViTLike(Protocol):
    """What :func:`load_hf_vit` needs of the model: :class:`~omnifuse.modalities.image.ViT`
    fits. A protocol, not the class, so converters sit below the encoders that call them
    (importing the encoder here made an import cycle)."""

    @property
    def config(self) -> ViTConfig: ...

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...


HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
"""HF ``hidden_act`` -> our ``activation``."""

_GLOBAL_KEYS = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.bias",
    "layernorm.weight": "blocks.norm.weight",
    "layernorm.bias": "blocks.norm.bias",
}
_LAYER_MODULES = {
    "attention.attention.query": "attn.q_proj",
    "attention.attention.key": "attn.k_proj",
    "attention.attention.value": "attn.v_proj",
    "attention.output.dense": "attn.out_proj",
    "attention.q_proj": "attn.q_proj",
    "attention.k_proj": "attn.k_proj",
    "attention.v_proj": "attn.v_proj",
    "attention.o_proj": "attn.out_proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layernorm_before": "attn_norm",
    "layernorm_after": "mlp_norm",
}
_LAYER_KEY = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
_IGNORED_PREFIXES = ("pooler.", "classifier.", "embeddings.mask_token")


def read_hf_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a local HF ViT directory.

    Raises:
        FileNotFoundError: no ``config.json`` there.
        ValueError: its ``model_type`` is not ``vit``.
    """
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected a local Hugging Face ViT directory")
    config: dict[str, Any] = json.loads(path.read_text())
    if config.get("model_type") != "vit":
        raise ValueError(f"{path}: model_type={config.get('model_type')!r}; expected 'vit'")
    return config


def _square(value: Any, name: str) -> int:
    """HF sizes may be an int or ``[h, w]``; we only support squares."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"HF {name}={value} is not square; omnifuse ViT needs square sizes")
        return int(value[0])
    return int(value)


def _mismatches(config: ViTConfig, hf: Mapping[str, Any]) -> list[str]:
    """One line per architecture field that differs: ours vs the HF value."""
    pairs: list[tuple[str, Any, str, Any]] = [
        ("dim", config.dim, "hidden_size", hf["hidden_size"]),
        ("num_layers", config.num_layers, "num_hidden_layers", hf["num_hidden_layers"]),
        ("num_heads", config.num_heads, "num_attention_heads", hf["num_attention_heads"]),
        ("patch_size", config.patch_size, "patch_size", _square(hf["patch_size"], "patch_size")),
        ("channels", config.channels, "num_channels", hf.get("num_channels", 3)),
        (
            "processor.image_size",
            config.processor.image_size,
            "image_size",
            _square(hf["image_size"], "image_size"),
        ),
        (
            "activation",
            config.activation,
            "hidden_act",
            HF_ACTIVATIONS.get(hf.get("hidden_act", "gelu"), hf.get("hidden_act")),
        ),
        ("norm_first", config.norm_first, "(pre-norm)", True),
    ]
    lines = [f"{ours}: config {a!r} vs HF {theirs} {b!r}" for ours, a, theirs, b in pairs if a != b]
    if int(config.dim * config.mlp_ratio) != hf["intermediate_size"]:
        lines.append(
            f"mlp_ratio: config {config.mlp_ratio} (MLP width {int(config.dim * config.mlp_ratio)})"
            f" vs HF intermediate_size {hf['intermediate_size']} "
            f"(mlp_ratio {hf['intermediate_size'] / hf['hidden_size']:g})"
        )
    eps = float(hf.get("layer_norm_eps", 1e-12))
    if not math.isclose(config.norm_eps, eps, rel_tol=1e-6):
        lines.append(f"norm_eps: config {config.norm_eps:g} vs HF layer_norm_eps {eps:g}")
    return lines


def check_vit_config(config: ViTConfig, hf: Mapping[str, Any], source: str | Path) -> None:
    """Raise a ValueError naming every field where ``config`` and the HF config differ."""
    lines = _mismatches(config, hf)
    if lines:
        raise ValueError(
            f"HF ViT at {source} does not match the ViT config "
            "(set these fields to the HF values, e.g. with vit_config_from_hf):\n  "
            + "\n  ".join(lines)
        )


def vit_config_from_hf(directory: str | Path, **overrides: Any) -> ViTConfig:
    """A :class:`ViTConfig` matching a local HF ViT (``pretrained`` set to ``directory``).

    Normalisation ``mean``/``std`` come from ``preprocessor_config.json`` when present.
    ``overrides`` replace top-level fields (e.g. ``pooling="mean"``).
    """
    hf = read_hf_config(directory)
    act = hf.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"HF hidden_act={act!r} is not supported; valid: {sorted(HF_ACTIVATIONS)}")
    processor: dict[str, Any] = {"image_size": _square(hf["image_size"], "image_size")}
    preprocessor = Path(directory) / "preprocessor_config.json"
    if preprocessor.is_file():
        pre = json.loads(preprocessor.read_text())
        processor.update({k: pre[f"image_{k}"] for k in ("mean", "std") if f"image_{k}" in pre})
    fields: dict[str, Any] = {
        "dim": hf["hidden_size"],
        "num_layers": hf["num_hidden_layers"],
        "num_heads": hf["num_attention_heads"],
        "mlp_ratio": hf["intermediate_size"] / hf["hidden_size"],
        "patch_size": _square(hf["patch_size"], "patch_size"),
        "channels": hf.get("num_channels", 3),
        "norm_eps": float(hf.get("layer_norm_eps", 1e-12)),
        "activation": HF_ACTIVATIONS[act],
        "processor": processor,
        "pretrained": Path(directory),
    }
    return ViTConfig.model_validate({**fields, **overrides})


def read_safetensors(directory: str | Path) -> dict[str, Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed in its ``.index.json``."""
    directory = Path(directory)
    single = directory / "model.safetensors"
    if single.is_file():
        return load_file(single)
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise FileNotFoundError(
            f"no model.safetensors (or .index.json) in {directory}; found {present}"
        )
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state: dict[str, Tensor] = {}
    for shard in shards:
        state.update(load_file(directory / shard))
    return state


def _our_key(key: str) -> str | None:
    """Our parameter name for one HF key; None for keys we deliberately drop."""
    key = key.removeprefix("vit.")
    if key.startswith(_IGNORED_PREFIXES):
        return None
    if key in _GLOBAL_KEYS:
        return _GLOBAL_KEYS[key]
    match = _LAYER_KEY.match(key)
    if match is None or match.group(2) not in _LAYER_MODULES:
        raise ValueError(f"unexpected weight {key!r} in the HF ViT checkpoint")
    layer, module, kind = match.groups()
    return f"blocks.layers.{layer}.{_LAYER_MODULES[module]}.{kind}"


def map_hf_vit_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """HF ViT weights -> our :class:`ViT` parameter names (pooler/classifier dropped)."""
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        ours = _our_key(key)
        if ours is not None:
            mapped[ours] = value
    return mapped


def _fill_missing_qkv_bias(mapped: dict[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """``qkv_bias=False`` checkpoints have no q/k/v biases: a zero bias is the same thing."""
    for key, reference in expected.items():
        if key not in mapped and re.search(r"attn\.[qkv]_proj\.bias$", key):
            mapped[key] = torch.zeros_like(reference)


def load_hf_vit(model: ViTLike, directory: str | Path) -> None:
    """Load a local HF ViT directory into ``model`` in place.

    Raises:
        ValueError: the HF architecture differs from ``model.config`` (every field listed), or
            the checkpoint lacks or adds weights.
    """
    hf = read_hf_config(directory)
    check_vit_config(model.config, hf, directory)
    mapped = map_hf_vit_state_dict(read_safetensors(directory))
    expected = model.state_dict()
    if not hf.get("qkv_bias", True):
        _fill_missing_qkv_bias(mapped, expected)
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise ValueError(f"HF ViT at {directory} lacks weights for {missing}")
    model.load_state_dict(mapped, strict=True)
