"""Save/load a model as a directory: ``config.yaml`` + ``model.safetensors`` + per-modality
asset folders (tokenizer, HF configs) + ``heads/<name>/`` for heads that wrap an HF directory
(its config, generation config and tokenizer). No pickle anywhere.

A saved directory is self-contained: every path its ``config.yaml`` names points inside it, so
it loads, predicts and exports after the HF directories it was built from are gone (weights
come from ``model.safetensors``; the copies hold everything else).

Writes go to a temporary sibling directory that is renamed into place, so a crash never leaves a
half-written model behind the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from omnifuse.config.loader import ConfigError, read_yaml, validate_config
from omnifuse.config.run import RunConfig
from omnifuse.models.builder import Processors, build_model
from omnifuse.models.multimodal import MultimodalModel

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
HEADS_DIR = "heads"


class Pretrained(NamedTuple):
    """What :func:`load` returns: a model and the processors that match it."""

    model: MultimodalModel
    processors: Processors
    config: RunConfig


def save(
    directory: str | Path,
    model: MultimodalModel,
    processors: Processors,
    config: RunConfig | None = None,
) -> Path:
    """Write ``model`` (+ processors) to ``directory`` atomically; returns the directory.

    Args:
        directory: target directory (replaced if it exists).
        model: the model to save.
        processors: its processors (tokenizers etc. are written next to the weights).
        config: the full run config to record; defaults to one holding only ``model.config``.
    """
    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    run = (config if config is not None else RunConfig(model=model.config)).model_copy(deep=True)
    resolve_paths(run, Path.cwd())  # user paths stay valid wherever the directory is loaded from
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        data = run.model_dump(mode="json")
        encoders = data["model"]["encoders"]
        for modality in model.modalities:
            folder = tmp / modality
            folder.mkdir()
            updates = processors[modality].save(folder) if modality in processors else {}
            _deep_merge(updates, model.encoder(modality).save_assets(folder))
            _deep_merge(encoders[modality], _relative(updates, tmp))
        _save_head_assets(model, tmp, data["model"]["heads"])
        data["format_version"] = FORMAT_VERSION
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
        save_model(model, str(tmp / WEIGHTS_FILE))
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _save_head_assets(model: MultimodalModel, tmp: Path, heads: dict[str, Any]) -> None:
    """Heads with HF assets (``save_assets``: ``causal_lm``, ``whisper_decoder``) write them
    to ``heads/<name>/`` and their config's ``path`` points there (relative)."""
    for name, head in sorted(model.heads.items()):
        save_assets = getattr(head, "save_assets", None)
        if save_assets is None:
            continue
        updates = save_assets(tmp / HEADS_DIR / name)
        _deep_merge(heads[name], _relative(updates, tmp))


def load(directory: str | Path) -> Pretrained:
    """Load a saved model directory: ``model, processors, config = omnifuse.load(path)``.

    The model is in eval mode; processors are in eval mode (no augmentation).
    """
    path = Path(directory)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise ConfigError([f"{path} is not an omnifuse model directory (no {CONFIG_FILE})"])
    data = read_yaml(config_file)
    version = data.pop("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(
            [
                f"{path} was saved by a newer omnifuse (format_version {version!r}; this one "
                f"reads up to {FORMAT_VERSION}): upgrade omnifuse to load it"
            ]
        )
    config = validate_config(data, source=str(config_file))
    resolve_paths(config, path.resolve())
    model, processors = build_model(config.model, pretrained=False)
    load_weights(model, path / WEIGHTS_FILE)
    for processor in processors.values():
        processor.eval()
    return Pretrained(model.eval(), processors, config)


def load_weights(model: MultimodalModel, weights: Path) -> None:
    """Load ``weights`` (safetensors only: nothing is unpickled) into ``model``, strictly.

    Raises:
        ConfigError: the file is missing, truncated or not safetensors, or its tensors do not
            fit the config next to it (names the file and the first differences).
    """
    if not weights.is_file():
        raise ConfigError([f"{weights}: weights file not found"])
    try:
        load_model(model, str(weights), strict=True)
    except SafetensorError as err:
        raise ConfigError(
            [f"{weights}: unreadable safetensors file ({err}); the save is truncated or corrupt"]
        ) from None
    except RuntimeError as err:  # missing/unexpected keys or shape mismatches
        details = [line.strip() for line in str(err).splitlines()[1:4]]
        raise ConfigError(
            [
                f"{weights} does not match the config next to it ({CONFIG_FILE}): "
                + "; ".join(details)
                + " ...; was config.yaml edited, or copied from another run?"
            ]
        ) from None


def resolve_paths(config: BaseModel, base: Path) -> None:
    """Make every relative ``Path`` field of ``config`` (recursively) absolute under ``base``."""
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path) and not value.is_absolute():
            setattr(config, name, base / value)
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            setattr(config, name, [v if v.is_absolute() else base / v for v in value])
        elif isinstance(value, BaseModel):
            resolve_paths(value, base)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    resolve_paths(item, base)


def _relative(updates: Any, base: Path) -> Any:
    """Paths inside ``base`` become strings relative to it (so the directory can move)."""
    if isinstance(updates, dict):
        return {k: _relative(v, base) for k, v in updates.items()}
    if isinstance(updates, list):
        return [_relative(v, base) for v in updates]
    if isinstance(updates, Path):
        resolved = updates.resolve()
        return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(updates)
    return updates


def _deep_merge(into: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is swapped out first, then removed."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
