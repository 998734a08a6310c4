"""Config -> parts -> :class:`MultimodalModel`. The only place configs meet constructors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from omnifuse.config.base import FUSED
from omnifuse.config.loader import load_config
from omnifuse.config.model import ModelConfig
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.models.adapters import apply_adapters
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.registry import (
    HeadContext,
    build_processors,
    encoder_spec,
    fusion_builder,
    head_builder,
)

Processors = dict[str, Processor[Any]]


def build_encoders(
    config: ModelConfig, processors: Processors, pretrained: bool = True
) -> dict[str, Encoder]:
    """One encoder per configured modality; ``pretrained`` loads external weights if set."""
    encoders = {}
    for modality in config.encoders.configured():
        cfg = getattr(config.encoders, modality)
        spec = encoder_spec(modality, cfg.type)
        encoders[modality] = spec.build_encoder(cfg, processors[modality], pretrained)
    return encoders


def build_model(config: ModelConfig, pretrained: bool = True) -> tuple[MultimodalModel, Processors]:
    """Build a model and its matching processors from a validated :class:`ModelConfig`.

    Args:
        config: the model section of a run config.
        pretrained: load external weights named in the config (HF checkpoints). ``False``
            builds the architecture only, e.g. before loading omnifuse's own weights.
    """
    processors = build_processors(config)
    encoders = build_encoders(config, processors, pretrained)
    fusion = fusion_builder(config.fusion.type)(
        config.fusion, {m: e.dim for m, e in encoders.items()}
    )
    heads = build_heads(config, encoders, fusion.dim, processors, pretrained)
    enable_token_masking(config, encoders)
    sources = {name: cfg.source for name, cfg in config.heads.items()}
    model = MultimodalModel(encoders, fusion, heads, sources, config)
    apply_adapters(model, config.adapters)  # also when loading: the saved names include LoRA's
    return model, processors


def build_heads(
    config: ModelConfig,
    encoders: Mapping[str, Encoder],
    fused_dim: int,
    processors: Processors,
    pretrained: bool = True,
) -> dict[str, nn.Module]:
    """One head per ``config.heads`` entry, given its input width and the build context
    (``pretrained``: heads wrapping an HF model load its weights, see :class:`HeadContext`)."""
    heads: dict[str, nn.Module] = {}
    for name, head_cfg in sorted(config.heads.items()):
        in_dim = fused_dim if head_cfg.source == FUSED else encoders[head_cfg.source].dim
        context = HeadContext(in_dim, config, processors, pretrained)
        heads[name] = head_builder(head_cfg.type)(head_cfg, context)
    return heads


def enable_token_masking(config: ModelConfig, encoders: Mapping[str, Encoder]) -> None:
    """Give every encoder a ``reconstruction`` head reads a learned mask token.

    Masked modelling feeds ``token_mask`` to that encoder; the token is added only where a head
    needs it, so other models (and external checkpoints) keep their exact parameter set.
    """
    for name, head_cfg in sorted(config.heads.items()):
        if head_cfg.type != "reconstruction":
            continue
        encoder = encoders[head_cfg.source]
        enable = getattr(encoder, "enable_token_mask", None)
        if enable is None:
            raise ValueError(
                f"heads.{name}: the {head_cfg.source} encoder {type(encoder).__name__} has no "
                "token_mask support; masked modelling works with image 'vit' and audio "
                "'conv_transformer' encoders"
            )
        enable()


def create_model(
    name_or_path: str | Path, overrides: Sequence[str] = (), pretrained: bool = True
) -> tuple[MultimodalModel, Processors]:
    """Build the model of a preset name or YAML config file, with dotted overrides.

    Example:
        >>> model, processors = create_model("tiny", ["model.fusion.type=hybrid"])
    """
    return build_model(load_config(name_or_path, overrides).model, pretrained)
