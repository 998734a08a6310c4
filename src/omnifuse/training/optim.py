"""Parameter groups for fine-tuning: per-prefix LR / weight decay / freezing, layer-wise decay.

Parameter names are those of the model (``encoders.text.transformer.layers.0.mlp.fc1.weight``,
``fusion...``, ``heads.<name>...``), plus ``tasks.<task>...`` for task-owned parameters (e.g. a
contrastive temperature) and ``loss_weighting...`` for uncertainty log-variances.

A prefix matches a name when it equals it or is followed by a dot, so ``encoders.text`` matches
``encoders.text.embeddings.token.weight`` but not ``encoders.textual...``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from omnifuse.config.loader import ConfigError
from omnifuse.config.training import (
    IMPLICIT_RULES,
    RULE_FIELDS,
    ParamGroupConfig,
    TrainingConfig,
)
from omnifuse.models.adapters import is_adapter_param

NamedParams = list[tuple[str, nn.Parameter]]

_LAYER = re.compile(r"\.(?:layers|layer|blocks|h)\.(\d+)\.")
"""A Transformer layer index in a parameter name (ours: ``layers.N``; HF: ``layer.N``, ``h.N``)."""

NO_DECAY_PREFIXES = ("loss_weighting",)


def matches(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` lies under module-name ``prefix``."""
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


@dataclass
class FreezeReport:
    """What :func:`apply_freeze` did.

    Attributes:
        frozen: Names of the parameters frozen.
        trainable: Number of trainable parameter values left.
    """

    frozen: list[str] = field(default_factory=list)
    trainable: int = 0


@dataclass(frozen=True)
class Settings:
    """The per-prefix settings that apply to one parameter (None: inherited from the run)."""

    lr: float | None = None
    freeze: bool = False
    weight_decay: float | None = None


_WRAPPERS = re.compile(r"(?:^|\.)(?:_fsdp_wrapped_module|_checkpoint_wrapped_module)\.")
"""Segments that FSDP1 / activation checkpointing wrappers insert into parameter names."""


def clean_name(name: str) -> str:
    """``name`` without wrapper segments, so prefixes match under FSDP1 (use_orig_params) too."""
    return _WRAPPERS.sub(lambda m: "." if m.group(0).startswith(".") else "", name)


def _check_prefixes(rules: Sequence[tuple[str, ParamGroupConfig]], names: Sequence[str]) -> None:
    """Every prefix must match some parameter (a typo would silently train everything)."""
    unknown = [
        (where, rule.prefix)
        for where, rule in rules
        if where not in IMPLICIT_RULES and not any(matches(n, rule.prefix) for n in names)
    ]
    if unknown:
        tops = sorted({".".join(n.split(".")[:2]) for n in names})
        raise ConfigError(
            [
                f"{where}: {prefix!r} matches no parameter; valid prefixes include: "
                f"{', '.join(tops)}"
                for where, prefix in unknown
            ]
        )


def resolve_settings(names: Sequence[str], config: TrainingConfig) -> dict[str, Settings]:
    """The :class:`Settings` of each name: field by field, the most specific matching prefix.

    Raises:
        ConfigError: a prefix that matches no parameter (names the valid top-level prefixes).
    """
    rules = config.rules()
    cleaned = {name: clean_name(name) for name in names}
    _check_prefixes(rules, list(cleaned.values()))
    out = {}
    for name, clean in cleaned.items():
        chosen: dict[str, tuple[int, Any]] = {}
        for _, rule in rules:
            if not matches(clean, rule.prefix):
                continue
            depth = len(rule.prefix.rstrip(".").split("."))
            for key in RULE_FIELDS:
                value = getattr(rule, key)
                if value is not None and depth >= chosen.get(key, (-1, None))[0]:
                    chosen[key] = (depth, value)
        out[name] = Settings(**{k: v for k, (_, v) in chosen.items()})
    return out


def apply_freeze(named: NamedParams, config: TrainingConfig) -> FreezeReport:
    """Set ``requires_grad=False`` where the resolved settings say ``freeze``.

    ``freeze: false`` only exempts a parameter from a broader freeze; a parameter the model
    already fixed (``freeze_lm``, a LoRA adapter's base weights) stays fixed.

    Raises:
        ConfigError: a prefix that matches no parameter (names the valid top-level prefixes).
    """
    settings = resolve_settings([n for n, _ in named], config)
    report = FreezeReport()
    for name, param in named:
        if settings[name].freeze:
            param.requires_grad_(False)
            report.frozen.append(name)
        elif param.requires_grad:
            report.trainable += param.numel()
    return report


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
    """Layer id of each parameter of one encoder, and the encoder's depth ``L``.

    Parameters before the first Transformer layer (embeddings) get 0, those of layer ``i`` get
    ``i + 1`` and those after the last layer (final norm, projections) get ``L + 1``; "before"
    and "after" follow registration order, which is the forward order for our encoders.
    """
    found = [_LAYER.search(n) for n in names]
    indices = [int(m.group(1)) for m in found if m is not None]
    if not indices:
        return dict.fromkeys(names, 0), 0
    depth = max(indices) + 1
    first = next(i for i, m in enumerate(found) if m is not None)
    ids = {}
    for position, (name, match) in enumerate(zip(names, found, strict=True)):
        if match is not None:
            ids[name] = int(match.group(1)) + 1
        else:
            ids[name] = 0 if position < first else depth + 1
    return ids, depth


def layer_scales(names: Sequence[str], decay: float) -> dict[str, float]:
    """LR multiplier per parameter: encoder layer ``i`` of ``L`` gets ``decay^(L + 1 - i)``.

    Parameters outside ``encoders.<modality>`` (fusion, heads, tasks) get 1.
    """
    scales = dict.fromkeys(names, 1.0)
    encoders: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(".")
        if parts[0] == "encoders" and len(parts) > 2:
            encoders.setdefault(parts[1], []).append(name)
    for members in encoders.values():
        ids, depth = layer_ids(members)
        for name, layer in ids.items():
            scales[name] = decay ** (depth + 1 - layer)
    return scales


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm weights and other scalars/vectors are not decayed (nor loss weights)."""
    return param.ndim <= 1 or any(matches(name, p) for p in NO_DECAY_PREFIXES)


def param_groups(named: NamedParams, config: TrainingConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups of the trainable parameters in ``named``.

    Each group holds parameters sharing an LR and a weight decay: LR = the most specific
    ``param_groups`` prefix's ``lr`` (the shorthands ``head_lr`` / ``head_lr_multiplier`` are
    such prefixes for ``heads`` and ``tasks``), else ``config.lr``, times the layer-wise decay
    (encoders). Groups carry ``name`` (for LR logging) and ``param_names``.
    """
    trainable = [(n, p) for n, p in named if p.requires_grad]
    names = [n for n, _ in trainable]
    settings = resolve_settings([n for n, _ in named], config)
    decay_scales = config.layer_decay
    scales = layer_scales([clean_name(n) for n in names], decay_scales) if decay_scales else {}
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in trainable:
        own = settings[name]
        base = own.lr if own.lr is not None else config.lr
        lr = base * scales.get(clean_name(name), 1.0)
        wd = own.weight_decay if own.weight_decay is not None else config.weight_decay
        decay = 0.0 if _no_decay(clean_name(name), param) else wd
        group = groups.setdefault((lr, decay), _group(len(groups), lr, decay))
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())


def _group(index: int, lr: float, decay: float) -> dict[str, Any]:
    return {
        "params": [],
        "param_names": [],
        "lr": lr,
        "weight_decay": decay,
        "name": f"group{index}",
    }


def build_optimizer(named: NamedParams, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`.

    Raises:
        ConfigError: nothing left to train (everything frozen).
    """
    groups = param_groups(named, config)
    if not groups:
        raise ConfigError(
            ["training.freeze leaves no trainable parameter; narrow it or add training.unfreeze"]
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def named_trainables(modules: Iterable[tuple[str, nn.Module]]) -> NamedParams:
    """``(prefix.name, param)`` for every parameter of ``modules`` (prefix "" for the model)."""
    out: NamedParams = []
    for prefix, module in modules:
        for name, param in module.named_parameters():
            out.append((f"{prefix}.{name}" if prefix else name, param))
    return out


# --- parameter counts -----------------------------------------------------------------------

PARAMS_FILE = "params.json"
"""Where a run records its parameter counts (in the run directory)."""

_COMPONENT_DEPTH = {"encoders": 2, "heads": 2, "tasks": 2}
"""Name parts that make a top-level component (``encoders.image``; ``fusion`` is one part)."""


def component_of(name: str) -> str:
    """Top-level component of a parameter name: ``encoders.image``, ``fusion``, ``heads.lm``."""
    parts = clean_name(name).split(".")
    return ".".join(parts[: _COMPONENT_DEPTH.get(parts[0], 1)])


def parameter_counts(named: NamedParams) -> dict[str, Any]:
    """Total / trainable parameter values, per top-level component and for the adapters.

    Returns:
        ``{"total", "trainable", "adapter": {"total", "trainable"}, "components": {name:
        {"total", "trainable"}}}`` (components sorted by name).
    """

    def tally(entry: dict[str, int], param: nn.Parameter) -> None:
        entry["total"] += param.numel()
        entry["trainable"] += param.numel() if param.requires_grad else 0

    overall, adapter = {"total": 0, "trainable": 0}, {"total": 0, "trainable": 0}
    components: dict[str, dict[str, int]] = {}
    for name, param in named:
        tally(overall, param)
        tally(components.setdefault(component_of(name), {"total": 0, "trainable": 0}), param)
        if is_adapter_param(name):
            tally(adapter, param)
    return {**overall, "adapter": adapter, "components": dict(sorted(components.items()))}


def format_counts(counts: Mapping[str, Any]) -> str:
    """One console line: ``parameters: 1,234 total, 56 trainable (4.5%); adapter 48; ...``."""
    share = 100.0 * counts["trainable"] / max(counts["total"], 1)
    parts = [
        f"parameters: {counts['total']:,} total, {counts['trainable']:,} trainable "
        f"({share:.2f}%); adapter {counts['adapter']['total']:,}"
    ]
    parts += [
        f"{name} {c['trainable']:,}/{c['total']:,}" for name, c in counts["components"].items()
    ]
    return "; ".join(parts)


def report_parameters(named: NamedParams, run_dir: Path | None) -> dict[str, Any]:
    """Print the parameter counts (rank 0, through Lightning's console logger) and write them to
    ``run_dir/params.json`` (if given)."""
    counts = parameter_counts(named)
    rank_zero_info(format_counts(counts))
    if run_dir is not None:
        (run_dir / PARAMS_FILE).write_text(json.dumps(counts, indent=2) + "\n")
    return counts
