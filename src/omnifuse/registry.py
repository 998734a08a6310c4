"""Registries of encoders (per modality), fusions and heads, keyed by their config ``type``.

Components register themselves with decorators when their module is imported;
:func:`ensure_registered` imports every built-in component module once. Unknown names raise
errors that list the valid choices.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from omnifuse.config.model import ModelConfig
from omnifuse.types import Encoder, Fusion, Processor

EncoderBuilder = Callable[[Any, Processor[Any], bool], Encoder]
"""``(encoder config, its processor, load_pretrained) -> Encoder``."""
ProcessorBuilder = Callable[[Any], Processor[Any]]
FusionBuilder = Callable[[Any, Mapping[str, int]], Fusion]
"""``(fusion config, encoder widths keyed by modality) -> Fusion``."""


@dataclass(frozen=True)
class HeadContext:
    """What a head builder may need besides its own config.

    Attributes:
        in_dim: width of the features the head reads (fusion ``dim`` or its source encoder's).
        model: the whole model config (e.g. the source encoder's patch size).
        processors: the model's processors keyed by modality (e.g. the text tokenizer, whose
            vocabulary size and special ids LM heads need).
        pretrained: load external weights (an HF LM's) from the config's ``path``; False
            builds the architecture only, before an omnifuse checkpoint fills in the weights.
    """

    in_dim: int
    model: ModelConfig
    processors: Mapping[str, Processor[Any]]
    pretrained: bool = True


HeadBuilder = Callable[[Any, HeadContext], nn.Module]
"""``(head config, build context) -> head module``; what :func:`head_builder` returns."""
WidthHeadBuilder = Callable[[Any, int], nn.Module]
"""``(head config, input width) -> head module``: heads that need nothing else."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class EncoderSpec:
    """A registered encoder type of one modality and how to build it and its processor."""

    modality: str
    type: str
    build_encoder: EncoderBuilder
    build_processor: ProcessorBuilder
    description: str


_ENCODERS: dict[tuple[str, str], EncoderSpec] = {}
_FUSIONS: dict[str, tuple[FusionBuilder, str]] = {}
_HEADS: dict[str, tuple[HeadBuilder, str]] = {}

_BUILTIN_MODULES = (
    "omnifuse.modalities.text",
    "omnifuse.modalities.image",
    "omnifuse.modalities.audio",
    "omnifuse.modalities.video",
    "omnifuse.fusion.concat",
    "omnifuse.fusion.parallel",
    "omnifuse.fusion.hybrid",
    "omnifuse.heads",
)
_loaded = False


def ensure_registered() -> None:
    """Import the built-in component modules so their decorators run (idempotent)."""
    global _loaded
    if not _loaded:
        for name in _BUILTIN_MODULES:
            importlib.import_module(name)
        _loaded = True


def register_encoder(
    modality: str, type: str, processor: ProcessorBuilder, description: str
) -> Callable[[EncoderBuilder], EncoderBuilder]:
    """Decorator registering an encoder builder (and the builder of its processor)."""

    def wrap(fn: EncoderBuilder) -> EncoderBuilder:
        _ENCODERS[(modality, type)] = EncoderSpec(modality, type, fn, processor, description)
        return fn

    return wrap


def register_fusion(type: str, description: str) -> Callable[[FusionBuilder], FusionBuilder]:
    """Decorator registering a fusion builder under its config ``type``."""

    def wrap(fn: FusionBuilder) -> FusionBuilder:
        _FUSIONS[type] = (fn, description)
        return fn

    return wrap


def register_head(type: str, description: str, context: bool = False) -> Callable[[F], F]:
    """Decorator registering a head builder under its config ``type``.

    Args:
        type: the head config's ``type``.
        description: one line for ``omnifuse list``.
        context: the builder takes ``(config, HeadContext)`` (a :data:`HeadBuilder`); by
            default it takes ``(config, in_dim)`` (a :data:`WidthHeadBuilder`).
    """

    def wrap(fn: F) -> F:
        build: HeadBuilder = fn if context else _with_width(fn)
        _HEADS[type] = (build, description)
        return fn

    return wrap


def _with_width(fn: WidthHeadBuilder) -> HeadBuilder:
    def build(config: Any, ctx: HeadContext) -> nn.Module:
        return fn(config, ctx.in_dim)

    return build


def _unknown(kind: str, name: str, choices: list[str]) -> KeyError:
    return KeyError(f"unknown {kind} {name!r}; valid choices: {', '.join(choices)}")


def encoder_spec(modality: str, type: str) -> EncoderSpec:
    """The registered spec for ``(modality, type)``."""
    ensure_registered()
    spec = _ENCODERS.get((modality, type))
    if spec is None:
        choices = sorted(t for m, t in _ENCODERS if m == modality)
        raise _unknown(f"{modality} encoder", type, choices)
    return spec


def build_processors(config: ModelConfig) -> dict[str, Processor[Any]]:
    """One processor per configured encoder, keyed by modality (built from its encoder config)."""
    processors: dict[str, Processor[Any]] = {}
    for modality in config.encoders.configured():
        cfg = getattr(config.encoders, modality)
        processors[modality] = encoder_spec(modality, cfg.type).build_processor(cfg)
    return processors


def fusion_builder(type: str) -> FusionBuilder:
    ensure_registered()
    if type not in _FUSIONS:
        raise _unknown("fusion", type, sorted(_FUSIONS))
    return _FUSIONS[type][0]


def head_builder(type: str) -> HeadBuilder:
    ensure_registered()
    if type not in _HEADS:
        raise _unknown("head", type, sorted(_HEADS))
    return _HEADS[type][0]


def list_encoders() -> list[EncoderSpec]:
    """Every registered encoder, sorted by (modality, type)."""
    ensure_registered()
    return [_ENCODERS[k] for k in sorted(_ENCODERS)]


def list_fusions() -> dict[str, str]:
    """Fusion type -> description."""
    ensure_registered()
    return {k: _FUSIONS[k][1] for k in sorted(_FUSIONS)}


def list_heads() -> dict[str, str]:
    """Head type -> description."""
    ensure_registered()
    return {k: _HEADS[k][1] for k in sorted(_HEADS)}
