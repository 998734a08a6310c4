"""``training.init_from``: start from another run's (or a saved model's) weights, by name.

Tensors whose name and shape match are copied; the rest are reported, never silently dropped:
*missing* (in this model, not in the source: kept at their fresh initialisation), *unexpected*
(in the source only: ignored) and *mismatched* (same name, other shape: kept fresh, e.g. a
classification head with another number of classes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from omnifuse.config.loader import ConfigError
from omnifuse.models.adapters import base_name
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.models.persistence import CONFIG_FILE, load
from omnifuse.training.checkpoint import MODEL_DIR

log = logging.getLogger("omnifuse.training")


@dataclass
class InitReport:
    """What :func:`init_from` copied and what it could not.

    Attributes:
        source: The model directory read.
        loaded: Names copied from the source.
        missing: Names this model has that the source lacks.
        unexpected: Names the source has that this model lacks.
        mismatched: ``name: source shape -> target shape`` for names whose shapes differ.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the console and the log."""
        lines = [f"init_from {self.source}: loaded {len(self.loaded)} tensors"]
        for label, names in (
            ("missing (kept freshly initialised)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape mismatch (kept freshly initialised)", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:8]) + (
                    f", ... ({len(names)} in all)" if len(names) > 8 else ""
                )
                lines.append(f"  {label}: {shown}")
        return "\n".join(lines)


def resolve_model_dir(path: Path) -> Path:
    """The model directory of a run dir (``<run>/model``) or a model dir itself.

    Raises:
        ConfigError: ``path`` is neither.
    """
    for candidate in (path / MODEL_DIR, path):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise ConfigError(
        [
            f"training.init_from={str(path)!r} is neither a run dir (with {MODEL_DIR}/) nor a "
            f"model dir (with {CONFIG_FILE}); point it at a finished run or an `omnifuse model "
            "init` output"
        ]
    )


def init_from(model: MultimodalModel, path: Path) -> InitReport:
    """Copy matching weights from the model saved at ``path`` into ``model``."""
    source_dir = resolve_model_dir(path)
    source = load(source_dir).model.state_dict()
    target = model.state_dict()
    report = InitReport(str(source_dir))
    # A LoRA-adapted layer keeps its weight under ".base_layer": match names without it, so
    # a plain run initialises an adapted one (two-stage recipes) and the other way round.
    by_base = {base_name(n): n for n in target}
    copy: dict[str, torch.Tensor] = {}
    found: set[str] = set()
    for source_name, tensor in source.items():
        name = source_name if source_name in target else by_base.get(base_name(source_name))
        if name is None:
            report.unexpected.append(source_name)
            continue
        found.add(name)
        if target[name].shape != tensor.shape:
            report.mismatched.append(
                f"{name}: {tuple(tensor.shape)} -> {tuple(target[name].shape)}"
            )
        else:
            copy[name] = tensor
    report.missing = [n for n in target if n not in found]
    report.loaded = sorted(copy)
    model.load_state_dict(copy, strict=False)
    log.info("%s", report.summary())
    return report
