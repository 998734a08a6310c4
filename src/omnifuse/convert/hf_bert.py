"""Local Hugging Face BERT checkpoints (``BertModel`` safetensors) -> native ``TextTransformer``.

The same functions serve model building (``TextTransformerConfig.pretrained``) and the parity
test against ``transformers.BertModel``::

    config = TextTransformerConfig(**text_config_from_hf("path/to/bert"))
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from omnifuse.config.text import TextTransformerConfig


class TextEncoderLike(Protocol):
    """What :func:`load_hf_bert` needs of the encoder:
    :class:`~omnifuse.modalities.text.TextTransformer` fits. A protocol, not the class, so
    converters sit below the encoders that call them (importing the encoder made a cycle)."""

    @property
    def vocab_size(self) -> int: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...


HF_FIELDS = (
    "dim",
    "num_layers",
    "num_heads",
    "mlp_ratio",
    "max_positions",
    "type_vocab_size",
    "norm_first",
    "norm_eps",
    "activation",
)
"""Fields of ``TextTransformerConfig`` that must match the checkpoint."""

_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
_EMBEDDINGS = {
    "embeddings.word_embeddings": "embeddings.token",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
}
_LAYER = {
    "attention.self.query": "attn.q_proj",
    "attention.self.key": "attn.k_proj",
    "attention.self.value": "attn.v_proj",
    "attention.output.dense": "attn.out_proj",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "mlp_norm",
}
# Weights our encoder has no use for: the NSP pooler, pretraining heads, a position-id buffer.
_IGNORED = ("pooler.", "cls.", "embeddings.position_ids")
_LAYER_KEY = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
# Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
_LEGACY_SUFFIX = {"gamma": "weight", "beta": "bias"}


def read_hf_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a local HF directory, with the model class defaults filled in."""
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in HF model directory {path}")
    raw = json.loads((path / "config.json").read_text())
    if raw.get("model_type") != "bert":
        raise ValueError(
            f"{path}/config.json has model_type={raw.get('model_type')!r}; this converter "
            "supports 'bert' (use the text encoder type 'hf' for other architectures)"
        )
    from transformers import BertConfig

    return BertConfig.from_pretrained(str(path)).to_dict()


def text_config_from_hf(path: str | Path) -> dict[str, Any]:
    """``TextTransformerConfig`` field values reproducing the local HF BERT at ``path``.

    Includes ``pretrained`` and a ``pretrained`` tokenizer section pointing at ``path``.

    Raises:
        ValueError: not a BERT, relative position embeddings, or an unsupported activation.
    """
    path = Path(path)
    hf = read_hf_config(path)
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"{path}: position_embedding_type={hf['position_embedding_type']!r}; "
            "only 'absolute' converts"
        )
    if hf["hidden_act"] not in _ACTIVATIONS:
        raise ValueError(
            f"{path}: hidden_act={hf['hidden_act']!r}; supported: {', '.join(_ACTIVATIONS)}"
        )
    return {
        "dim": hf["hidden_size"],
        "num_layers": hf["num_hidden_layers"],
        "num_heads": hf["num_attention_heads"],
        "mlp_ratio": hf["intermediate_size"] / hf["hidden_size"],
        "max_positions": hf["max_position_embeddings"],
        "type_vocab_size": hf["type_vocab_size"],
        "norm_first": False,
        "norm_eps": hf["layer_norm_eps"],
        "activation": _ACTIVATIONS[hf["hidden_act"]],
        "pretrained": path,
        "tokenizer": {"type": "pretrained", "path": path},
    }


def _same(field: str, ours: Any, theirs: Any, dim: int) -> bool:
    if field == "mlp_ratio":  # compare the MLP widths actually built, not float ratios
        return int(dim * float(ours)) == round(dim * float(theirs))
    if field == "norm_eps":
        return math.isclose(float(ours), float(theirs), rel_tol=1e-6)
    return bool(ours == theirs)


def check_hf_bert_config(config: TextTransformerConfig, vocab_size: int, path: Path) -> None:
    """Raise one ValueError listing every field where ``config`` differs from the checkpoint.

    Args:
        config: our encoder config.
        vocab_size: the tokenizer's vocabulary size (the token-table rows we build); may be
            smaller than the checkpoint's table, never larger.
        path: local HF BERT directory.
    """
    expected = text_config_from_hf(path)
    problems = [
        f"{field}: config has {getattr(config, field)!r}, checkpoint has {expected[field]!r}"
        for field in HF_FIELDS
        if not _same(field, getattr(config, field), expected[field], config.dim)
    ]
    hf_vocab = read_hf_config(path)["vocab_size"]
    if vocab_size > hf_vocab:
        problems.append(
            f"vocab_size: tokenizer has {vocab_size} ids, checkpoint only {hf_vocab} "
            f"(use the checkpoint's tokenizer: tokenizer.type='pretrained', tokenizer.path={path})"
        )
    if problems:
        lines = "\n  ".join(problems)
        raise ValueError(f"text encoder config does not match the HF BERT at {path}:\n  {lines}")


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of ``model.safetensors`` (or its shards) in a local HF directory."""
    from safetensors.torch import load_file

    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        raise FileNotFoundError(
            f"no model.safetensors or model.safetensors.index.json in {path} "
            "(convert .bin checkpoints with transformers' save_pretrained first)"
        )
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state: dict[str, Tensor] = {}
    for shard in shards:
        state.update(load_file(str(path / shard)))
    return state


def _rename(key: str) -> str | None:
    """HF BERT parameter name -> ours; None for weights we drop. Raises on unknown names."""
    key = key.removeprefix("bert.")
    if key.startswith(_IGNORED):
        return None
    module, _, suffix = key.rpartition(".")
    suffix = _LEGACY_SUFFIX.get(suffix, suffix)
    if module in _EMBEDDINGS:
        return f"{_EMBEDDINGS[module]}.{suffix}"
    match = _LAYER_KEY.fullmatch(module)
    if match is not None and match.group(2) in _LAYER:
        return f"transformer.layers.{match.group(1)}.{_LAYER[match.group(2)]}.{suffix}"
    raise KeyError(key)


def convert_hf_bert_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an HF ``BertModel`` (or ``bert.``-prefixed) state dict to ``TextTransformer``'s.

    Raises:
        ValueError: names no BERT weight carries (listing them).
    """
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        try:
            name = _rename(key)
        except KeyError:
            unknown.append(key)
            continue
        if name is not None:
            converted[name] = tensor
    if unknown:
        raise ValueError(f"not BERT encoder weights: {', '.join(sorted(unknown)[:10])}")
    return converted


def load_hf_bert(encoder: TextEncoderLike, path: Path) -> None:
    """Copy the weights of the local HF BERT at ``path`` into ``encoder`` (in place).

    Call :func:`check_hf_bert_config` first for readable dimension errors.

    Raises:
        ValueError: the checkpoint lacks weights the encoder needs, or has extra ones.
    """
    state = convert_hf_bert_state(read_safetensors(path))
    # Checkpoints often pad the token table beyond the tokenizer (e.g. to a multiple of 64);
    # rows no id can reach are dropped so the architecture follows the tokenizer alone.
    table = state.get("embeddings.token.weight")
    if table is not None and table.shape[0] > encoder.vocab_size:
        state["embeddings.token.weight"] = table[: encoder.vocab_size]
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"HF BERT at {path} does not fit the encoder: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )
