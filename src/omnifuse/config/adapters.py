"""Parameter-efficient adapters: ``model.adapters``, keyed by the module path they adapt.

A key is a module path of the model: a component (``encoders.<modality>``, ``fusion``,
``heads.<name>``) or a module inside one (``heads.lm.lm`` is the LM of a ``causal_lm`` head,
``encoders.image.model`` the transformers backbone of an ``hf`` tower). Every weight under that
path that is not the adapter's own is frozen, as LoRA does; the rest of the model is untouched.
The component part is checked here, the rest (and the target modules) when the model is built
(:mod:`omnifuse.models.adapters`), where the module names are known.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from omnifuse.config.base import StrictModel

COMPONENT_ROOTS = ("encoders", "fusion", "heads")
"""First part of an adapter key: where the model keeps its components."""


class LoraAdapterConfig(StrictModel):
    """LoRA (Hu et al. 2021) through ``peft``: ``W x + (alpha / r) B A x`` on each target layer,
    with ``A`` random, ``B`` zero (so training starts from the unadapted model)."""

    type: Literal["lora"] = Field(
        default="lora",
        description="Adapter kind. QLoRA is not offered: its 4-bit weights need bitsandbytes, "
        "which runs on CUDA only (see docs/pretrained.md).",
    )
    r: int = Field(default=8, gt=0, description="Rank of the low-rank update.")
    alpha: int = Field(default=16, gt=0, description="Scale numerator: update x alpha / r.")
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout on the adapter's input (training)."
    )
    target_modules: list[str] = Field(
        min_length=1,
        description="Layers to adapt (Linear, Embedding, Conv): a module name (q_proj matches "
        "every ...q_proj) or a dotted path ending one (layers.0.self_attn.q_proj). A name "
        "that matches nothing is an error listing the names that exist.",
    )

    @field_validator("target_modules")
    @classmethod
    def _no_blank_targets(cls, value: list[str]) -> list[str]:
        blank = [t for t in value if not t.strip(".").strip()]
        if blank:
            raise ValueError(f"target_modules holds empty names: {blank}")
        return value


def check_adapter_keys(keys: list[str], modalities: list[str], heads: list[str]) -> list[str]:
    """Problems with adapter keys whose component is not part of the model (empty: all fine).

    Args:
        keys: the ``model.adapters`` keys.
        modalities: configured encoder modalities.
        heads: configured head names.
    """
    components = [f"encoders.{m}" for m in modalities] + ["fusion"] + [f"heads.{h}" for h in heads]
    problems = []
    for key in keys:
        parts = key.split(".")
        depth = 1 if parts[0] == "fusion" else 2
        if ".".join(parts[:depth]) not in components or any(not p for p in parts):
            problems.append(
                f"model.adapters: {key!r} is not inside a configured component; valid "
                f"components: {', '.join(components)} (or a module inside one, e.g. "
                "heads.<name>.lm for a causal_lm head's LM)"
            )
    for key in keys:
        inside = [k for k in keys if k != key and k.startswith(key + ".")]
        if inside:
            problems.append(
                f"model.adapters: {key!r} contains {', '.join(map(repr, inside))}; adapters "
                "may not nest (the inner layers would be adapted twice)"
            )
    return problems
