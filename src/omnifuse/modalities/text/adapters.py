"""Adapter: any local Hugging Face ``AutoModel`` text backbone behind the :class:`Encoder` contract.

It consumes the same batch keys as the native encoder (``input_ids``, ``attention_mask``), built
by a :class:`HFTextProcessor` around the directory's own tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from omnifuse.config.text import TextHFConfig
from omnifuse.layers.transformer import masked_mean
from omnifuse.modalities.base import Encoder, EncoderOutput, Processor
from omnifuse.modalities.hf import load_hf_model
from omnifuse.modalities.text.processor import TextProcessor
from omnifuse.modalities.text.tokenizer import load_pretrained_tokenizer
from omnifuse.registry import register_encoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_POOLINGS = ("cls", "mean")
_DEFAULT_MAX_LENGTH = 512


class HFTextProcessor(TextProcessor):
    """:class:`TextProcessor` over an HF tokenizer directory (``TextHFConfig.tokenizer``)."""

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the tokenizer files into ``directory``; returns ``{"tokenizer": directory}``."""
        return {"tokenizer": self.tokenizer.save(directory)["path"]}


def _max_positions(path: Path) -> int | None:
    """``max_position_embeddings`` from the model's ``config.json`` (None when absent)."""
    file = path / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"no config.json in HF model directory {path}")
    value = json.loads(file.read_text()).get("max_position_embeddings")
    return value if isinstance(value, int) else None


def _max_length(config: TextHFConfig) -> int:
    """The configured truncation length, checked against (or defaulting to) the model's."""
    positions = _max_positions(config.path)
    if config.max_length is None:
        return _DEFAULT_MAX_LENGTH if positions is None else min(positions, _DEFAULT_MAX_LENGTH)
    if positions is not None and config.max_length > positions:
        raise ValueError(
            f"max_length={config.max_length} exceeds the model's "
            f"max_position_embeddings={positions} ({config.path})"
        )
    return config.max_length


def build_hf_text_processor(config: TextHFConfig) -> HFTextProcessor:
    """The tokenizer of ``config.tokenizer`` (default: the model directory ``config.path``)."""
    source = config.path if config.tokenizer is None else config.tokenizer
    return HFTextProcessor(load_pretrained_tokenizer(source), _max_length(config))


def _hidden_size(model: PreTrainedModel) -> int:
    size = getattr(model.config, "hidden_size", None)
    if not isinstance(size, int):
        raise ValueError(f"{type(model).__name__} has no config.hidden_size to set the encoder dim")
    return size


class TextHFEncoder(Encoder):
    """A Hugging Face text model (BERT, MiniLM, RoBERTa, ...) as an omnifuse encoder.

    Args:
        model: a transformers model whose output has ``last_hidden_state`` ``[B, L, D]``.
        pooling: ``"cls"`` (first token) or ``"mean"`` (mean over valid tokens, as
            sentence-transformers' MiniLM is trained).
        freeze: keep the backbone's weights fixed (no gradients, dropout off).
    """

    modality: ClassVar[str] = "text"

    def __init__(self, model: PreTrainedModel, pooling: str = "mean", freeze: bool = False) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling={pooling!r}; valid choices: {', '.join(_POOLINGS)}")
        # The NSP pooler is unused by our pooling; parameters without gradients would break
        # DDP (unused parameters) and the every-parameter-learns contract.
        if isinstance(getattr(model, "pooler", None), nn.Module):
            model.register_module("pooler", None)
        self.model: PreTrainedModel = model
        self.dim = _hidden_size(model)
        self.pooling = pooling
        self.frozen = freeze
        if freeze:
            self.model.requires_grad_(False)
            self.train(self.training)

    def train(self, mode: bool = True) -> TextHFEncoder:
        super().train(mode)
        if self.frozen:
            self.model.train(False)  # a frozen backbone keeps dropout off in training too
        return self

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``input_ids`` ``[B, L]`` + ``attention_mask`` ``[B, L]`` -> tokens ``[B, L, D]``."""
        if "input_ids" not in inputs:
            raise KeyError(f"text batch needs 'input_ids'; got keys {sorted(inputs)}")
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
        out = self.model(input_ids=input_ids, attention_mask=mask.long())
        tokens: Tensor = out.last_hidden_state
        pooled = tokens[:, 0] if self.pooling == "cls" else masked_mean(tokens, mask)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Through transformers' own switch: flipping the layers' ``gradient_checkpointing``
        flags alone (the base behaviour) leaves them without a checkpoint function."""
        if enabled:
            self.model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            # Unannotated in transformers.
            self.model.activation_checkpointing_disable()  # type: ignore[no-untyped-call]

    def save_assets(self, directory: Path) -> dict[str, Any]:
        """Write the HF ``config.json`` so the architecture rebuilds without the original dir."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(str(directory))
        return {"path": directory}


def load_hf_text_model(path: Path, pretrained: bool) -> PreTrainedModel:
    """``AutoModel`` from a local directory: its weights, or (``pretrained=False``) only its
    architecture, for weights that come from an omnifuse checkpoint. The shared HF loading path
    (:func:`omnifuse.modalities.hf.load_hf_model`); the NSP pooler, which the encoder drops,
    may be absent."""
    return load_hf_model(path, pretrained, optional=("pooler.",))


@register_encoder(
    "text",
    "hf",
    processor=build_hf_text_processor,
    description="Any local Hugging Face AutoModel text backbone (e.g. MiniLM), cls/mean pooling.",
)
def build_text_hf(config: TextHFConfig, processor: Processor[Any], pretrained: bool) -> Encoder:
    """Wrap the HF model at ``config.path`` (weights loaded only when ``pretrained``)."""
    _max_length(config)  # the processor checks it too; a hand-built processor may not
    model = load_hf_text_model(config.path, pretrained)
    return TextHFEncoder(model, config.pooling, config.freeze)
