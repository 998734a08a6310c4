"""Parameter groups for fine-tuning: freezing by name prefix, head LR, layer-wise LR decay.

Parameter names are those of the model (``encoders.text.transformer.layers.0.mlp.fc1.weight``,
``fusion...``, ``heads.<name>...``), plus ``tasks.<task>...`` for task-owned parameters (e.g. a
contrastive temperature) and ``loss_weighting...`` for uncertainty log-variances.

A prefix matches a name when it equals it or is followed by a dot, so ``encoders.text`` matches
``encoders.text.embeddings.token.weight`` but not ``encoders.textual...``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omnifuse.config.loader import ConfigError
from omnifuse.config.training import TrainingConfig

NamedParams = list[tuple[str, nn.Parameter]]

_LAYER = re.compile(r"\.(?:layers|layer|blocks|h)\.(\d+)\.")
"""A Transformer layer index in a parameter name (ours: ``layers.N``; HF: ``layer.N``, ``h.N``)."""

HEAD_PREFIXES = ("heads", "tasks")
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


def _check_prefixes(key: str, prefixes: Sequence[str], names: Sequence[str]) -> None:
    """Every prefix must match some parameter (a typo would silently train everything)."""
    unknown = [p for p in prefixes if not any(matches(n, p) for n in names)]
    if unknown:
        tops = sorted({".".join(n.split(".")[:2]) for n in names})
        raise ConfigError(
            [
                f"training.{key}: {p!r} matches no parameter; valid prefixes include: "
                f"{', '.join(tops)}"
                for p in unknown
            ]
        )


def apply_freeze(
    named: NamedParams, freeze: Sequence[str], unfreeze: Sequence[str]
) -> FreezeReport:
    """Set ``requires_grad=False`` under ``freeze`` prefixes, except under ``unfreeze`` ones.

    Raises:
        ConfigError: a prefix that matches no parameter (names the valid top-level prefixes).
    """
    names = [n for n, _ in named]
    _check_prefixes("freeze", freeze, names)
    _check_prefixes("unfreeze", unfreeze, names)
    report = FreezeReport()
    for name, param in named:
        frozen = any(matches(name, p) for p in freeze) and not any(
            matches(name, p) for p in unfreeze
        )
        if frozen:
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

    Each group holds parameters sharing an LR and a weight decay: LR = ``config.lr`` times the
    head multiplier (``heads.*``, ``tasks.*``) or the layer-wise decay (encoders). Groups carry
    ``name`` (for LR logging) and ``param_names``.
    """
    trainable = [(n, p) for n, p in named if p.requires_grad]
    names = [n for n, _ in trainable]
    scales = layer_scales(names, config.layer_decay) if config.layer_decay is not None else {}
    head_lr = (
        config.head_lr if config.head_lr is not None else config.lr * config.head_lr_multiplier
    )
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in trainable:
        is_head = any(matches(name, p) for p in HEAD_PREFIXES)
        lr = head_lr if is_head else config.lr * scales.get(name, 1.0)
        decay = 0.0 if _no_decay(name, param) else config.weight_decay
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
