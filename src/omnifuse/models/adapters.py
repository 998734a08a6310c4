"""LoRA adapters (``peft``) on any module of a model, and merging them back into the weights.

``model.adapters`` maps module paths to adapter configs (see :mod:`omnifuse.config.adapters`).
:func:`apply_adapters` injects peft's LoRA layers in place (``peft.inject_adapter_in_model``:
the module keeps its class, so the towers and heads around it are unchanged) and freezes every
other weight under that path. The same call runs whenever the model is built, for training and
for :func:`omnifuse.load`, so a saved adapted model loads strictly with its LoRA tensors.

Names change where a layer is adapted: ``...q_proj.weight`` becomes
``...q_proj.base_layer.weight`` next to ``...q_proj.lora_A.default.weight`` and
``...q_proj.lora_B.default.weight``. :func:`base_name` undoes that, so ``training.init_from``
can copy weights between adapted and plain models. :func:`merge_adapters` folds
``W + (alpha / r) B A`` into each base layer and puts the plain layer back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from torch import nn

from omnifuse.config.adapters import LoraAdapterConfig
from omnifuse.config.loader import ConfigError

ADAPTER_MARK = "lora_"
"""Part of every adapter parameter's name (``lora_A``, ``lora_B``), and of no other."""

ADAPTABLE = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types peft's LoRA adapts (plus transformers' GPT-2 ``Conv1D``, matched by name)."""

_BASE_LAYER = re.compile(r"\.base_layer(?=\.)")


def is_adapter_param(name: str) -> bool:
    """Whether parameter ``name`` belongs to an adapter (``...lora_A.default.weight``)."""
    return ADAPTER_MARK in name


def base_name(name: str) -> str:
    """``name`` as it is in the unadapted model (``.base_layer`` segments removed)."""
    return _BASE_LAYER.sub("", name)


def _adaptable(module: nn.Module) -> bool:
    return isinstance(module, ADAPTABLE) or type(module).__name__ == "Conv1D"


def _module_at(model: nn.Module, key: str) -> nn.Module:
    """The submodule at ``key``; a path that names none lists the paths that exist.

    Raises:
        ConfigError: no module at ``key``.
    """
    try:
        return model.get_submodule(key)
    except AttributeError:
        paths = [n for n, _ in model.named_modules() if n and n.count(".") < 3]
        raise ConfigError(
            [
                f"model.adapters: {key!r} is not a module of this model; module paths "
                f"include: {', '.join(paths)}"
            ]
        ) from None


def _matches_target(name: str, target: str) -> bool:
    """peft's rule for a list of targets: the full name, or a dotted suffix of it."""
    return name == target or name.endswith("." + target)


def check_targets(key: str, module: nn.Module, targets: Sequence[str]) -> None:
    """Every target must match an adaptable layer under ``module`` (peft alone only fails
    when *none* matches, so one typo in a list would silently adapt fewer layers).

    Raises:
        ConfigError: a target that matches nothing, listing the layer names that exist.
    """
    layers = [n for n, m in module.named_modules() if n and _adaptable(m)]
    unknown = [t for t in targets if not any(_matches_target(n, t) for n in layers)]
    if unknown:
        names = sorted({n.rsplit(".", 1)[-1] for n in layers})
        raise ConfigError(
            [
                f"model.adapters.{key}.target_modules: {t!r} matches no Linear/Embedding/Conv "
                f"layer of {key}; layer names there: {', '.join(names) or '(none)'}"
                for t in unknown
            ]
        )


def _inject_lora(module: nn.Module, config: LoraAdapterConfig) -> None:
    """peft's LoRA layers into ``module`` (in place); its other weights are frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
    )
    inject_adapter_in_model(lora, module)
    # Stated here rather than left to peft: only the adapter trains under its path.
    for name, param in module.named_parameters():
        param.requires_grad_(is_adapter_param(name))


def apply_adapters(model: nn.Module, adapters: Mapping[str, LoraAdapterConfig]) -> None:
    """Inject every configured adapter into ``model``, in sorted key order (in place).

    Raises:
        ConfigError: a key that names no module, or a target that matches no layer.
    """
    for key, config in sorted(adapters.items()):
        module = _module_at(model, key)
        check_targets(key, module, config.target_modules)
        _inject_lora(module, config)


def merge_adapters(model: nn.Module) -> int:
    """Fold every LoRA update into its base layer and put the plain layer back (in place).

    Afterwards ``model`` has exactly the parameter names of the unadapted model and computes
    what the adapted one did (up to float rounding; dropout is not part of inference).

    Returns:
        The number of layers merged.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = 0
    for name, layer in list(model.named_modules()):
        if not isinstance(layer, BaseTunerLayer):
            continue
        layer.merge(safe_merge=True)  # safe_merge: refuses to write NaN/Inf into the base
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
        merged += 1
    return merged
