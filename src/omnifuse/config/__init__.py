"""Typed, validated configuration (pydantic v2, ``extra="forbid"``) and its YAML loader."""

from omnifuse.config.base import MODALITIES, StrictModel, TransformerDims
from omnifuse.config.loader import (
    ConfigError,
    apply_overrides,
    dump_config,
    list_presets,
    load_config,
    validate_config,
)
from omnifuse.config.model import EncodersConfig, ModelConfig
from omnifuse.config.run import RunConfig

__all__ = [
    "MODALITIES",
    "ConfigError",
    "EncodersConfig",
    "ModelConfig",
    "RunConfig",
    "StrictModel",
    "TransformerDims",
    "apply_overrides",
    "dump_config",
    "list_presets",
    "load_config",
    "validate_config",
]
