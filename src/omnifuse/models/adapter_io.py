"""Saving an adapted model two more ways: merged (a plain model directory that loads without
peft) and adapter-only (the LoRA tensors and their config, a few hundred KB for a small LM).

A run whose model has adapters writes both next to ``<run>/model`` (see
:func:`save_adapter_variants`): ``<run>/model-merged`` and ``<run>/adapters``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from omnifuse.config.adapters import LoraAdapterConfig
from omnifuse.config.loader import ConfigError
from omnifuse.models.adapters import is_adapter_param, merge_adapters
from omnifuse.models.persistence import Pretrained, load, save

MERGED_DIR = "model-merged"
ADAPTERS_DIR = "adapters"
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapters.yaml"


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors of ``model`` by their model names (``...lora_A.default.weight``)."""
    return {n: t.detach().clone() for n, t in model.state_dict().items() if is_adapter_param(n)}


def save_merged(model_dir: Path, out: Path) -> Path:
    """Load the adapted model saved at ``model_dir``, merge its adapters, save it to ``out``.

    The copy's config has no ``model.adapters``, so ``omnifuse.load(out)`` builds the plain
    architecture and never touches peft.
    """
    return _merge_and_save(load(model_dir), out)


def _merge_and_save(loaded: Pretrained, out: Path) -> Path:
    """Merge ``loaded``'s adapters in place and save it without ``model.adapters``."""
    model, processors, config = loaded
    merge_adapters(model)
    config = config.model_copy(deep=True)
    config.model.adapters = {}
    model.config = config.model
    return save(out, model, processors, config)


def save_adapter_weights(
    model: nn.Module, adapters: dict[str, LoraAdapterConfig], directory: Path
) -> Path:
    """Write the adapter tensors (safetensors) and their config (YAML) to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state_dict(model), str(directory / ADAPTER_WEIGHTS))
    dumped = {key: cfg.model_dump(mode="json") for key, cfg in sorted(adapters.items())}
    (directory / ADAPTER_CONFIG).write_text(yaml.safe_dump(dumped, sort_keys=False))
    return directory


def load_adapter_weights(model: nn.Module, directory: Path) -> None:
    """Load an adapter-only save into ``model``, which must carry the same adapters.

    Raises:
        ConfigError: the file is missing or unreadable, or its tensors are not exactly the
            model's adapter tensors (names the first differences).
    """
    file = directory / ADAPTER_WEIGHTS
    try:
        tensors = load_file(str(file))
    except (FileNotFoundError, SafetensorError) as err:
        raise ConfigError([f"{file}: cannot read adapter weights ({err})"]) from None
    expected = set(adapter_state_dict(model))
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or extra:
        raise ConfigError(
            [
                f"{file} does not fit this model's adapters: missing {missing[:3]}, "
                f"unexpected {extra[:3]}; build the model with the adapters of "
                f"{directory / ADAPTER_CONFIG}"
            ]
        )
    model.load_state_dict(tensors, strict=False)


def save_adapter_variants(model_dir: Path, run_dir: Path) -> tuple[Path, Path]:
    """``<run>/model-merged`` and ``<run>/adapters`` from the adapted model at ``model_dir``."""
    loaded = load(model_dir)
    adapters = save_adapter_weights(
        loaded.model, loaded.config.model.adapters, run_dir / ADAPTERS_DIR
    )
    return _merge_and_save(loaded, run_dir / MERGED_DIR), adapters
