"""Samples -> batches: per-modality padding (each processor's ``collate``), ``present`` masks for
partially missing modalities, and targets encoded by their card type.

A batch is ``{"inputs": {modality: {tensor key: tensor}}, "targets": {field: ...}, "ids": [...]}``.
When only some samples of a batch have a modality, its tensors hold zeros for the others and its
dict gains ``"present"``: BoolTensor ``[B]``. A modality no sample of the batch has is absent
from ``inputs``.

Targets: ``class`` -> LongTensor ``[B]`` of indices into the card's classes (:data:`IGNORE_INDEX`
where missing); ``int`` -> LongTensor (IGNORE_INDEX where missing); ``float`` -> FloatTensor
(NaN where missing); ``text``/``string`` -> ``list[str | None]``; ``strings`` ->
``list[list[str] | None]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from omnifuse.data.card import DatasetCard
from omnifuse.data.manifest import INPUT_FIELDS, check_value
from omnifuse.modalities.base import MediaError, Processor
from omnifuse.types import IGNORE_INDEX as IGNORE_INDEX  # re-exported: data code imports it here
from omnifuse.types import Batch as Batch


@dataclass(frozen=True)
class TargetField:
    """How one target field is encoded.

    Attributes:
        name: The manifest field.
        type: Its card type (``class``, ``string``, ``strings``, ``int``, ``float``, ``text``).
        classes: Class names (``class`` only); a label's index is its position here.
    """

    name: str
    type: str
    classes: tuple[str, ...] = ()

    def encode(self, value: Any, source: str) -> Any:
        """One raw value -> what goes into the batch (None when absent).

        Raises:
            MediaError: a wrong type or an unknown class name (names the sample's source).
        """
        if value is None:
            return None
        kind, message = check_value(self.name, value, self.type, self.classes)
        if kind:
            raise MediaError(source, f"field {self.name!r} {message}")
        if self.type == "class":
            return self.classes.index(value)
        return value

    def collate(self, values: Sequence[Any]) -> Tensor | list[Any]:
        """Encoded values of a batch -> ``[B]`` tensor (class/int/float) or a list."""
        if self.type in ("class", "int"):
            return torch.tensor(
                [IGNORE_INDEX if v is None else v for v in values], dtype=torch.long
            )
        if self.type == "float":
            return torch.tensor([float("nan") if v is None else v for v in values])
        return list(values)


def target_fields(card: DatasetCard, names: Sequence[str] | None = None) -> dict[str, TargetField]:
    """The target fields to load: ``names`` (default: every non-input field of the card).

    Raises:
        ValueError: a name the card does not declare, or a class field without classes.
    """
    wanted = list(card.targets()) if names is None else list(names)
    fields: dict[str, TargetField] = {}
    for name in wanted:
        spec = card.fields.get(name)
        if spec is None or name in INPUT_FIELDS:
            valid = ", ".join(card.targets()) or "(none)"
            raise ValueError(
                f"data.fields: {name!r} is not a target field of dataset {card.name!r}; "
                f"valid choices: {valid}"
            )
        if spec.type == "class" and not spec.classes:
            raise ValueError(
                f"field {name!r} of dataset {card.name!r} is a class field without classes; "
                "list them in the card (fields.{name}.classes)"
            )
        fields[name] = TargetField(name, spec.type, tuple(spec.classes or ()))
    return fields


@dataclass
class LoadedSample:
    """One processed sample.

    Attributes:
        id: The sample id.
        inputs: Modality -> the processor's ``load`` output (absent modalities left out).
        targets: Field -> encoded value (None when the sample lacks it).
    """

    id: str
    inputs: dict[str, Any]
    targets: dict[str, Any]


def _scatter(batch: Mapping[str, Tensor], present: Tensor) -> dict[str, Tensor]:
    """Expand a batch of the present samples to all ``B`` rows (zeros elsewhere) + ``present``.

    Args:
        batch: Tensors ``[P, ...]`` collated from the ``P`` present samples.
        present: ``[B]`` bool with ``P`` True entries.
    """
    out: dict[str, Tensor] = {}
    for key, value in batch.items():
        full = value.new_zeros((present.shape[0], *value.shape[1:]))  # [B, ...]
        full[present] = value
        out[key] = full
    out["present"] = present
    return out


def collate_inputs(
    samples: Sequence[LoadedSample], processors: Mapping[str, Processor[Any]]
) -> dict[str, dict[str, Tensor]]:
    """Collate every modality with its processor; modalities are visited in sorted order."""
    inputs: dict[str, dict[str, Tensor]] = {}
    for modality in sorted(processors):
        loaded = [s.inputs[modality] for s in samples if modality in s.inputs]
        if not loaded:
            continue
        batch = processors[modality].collate(loaded)
        if len(loaded) < len(samples):
            present = torch.tensor([modality in s.inputs for s in samples], dtype=torch.bool)
            batch = _scatter(batch, present)
        inputs[modality] = batch
    return inputs


def collate_samples(
    samples: Sequence[LoadedSample],
    processors: Mapping[str, Processor[Any]],
    fields: Mapping[str, TargetField],
) -> Batch:
    """Loaded samples -> one :class:`Batch`.

    Raises:
        ValueError: an empty list of samples.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    targets = {
        name: field.collate([s.targets.get(name) for s in samples])
        for name, field in fields.items()
    }
    return Batch(
        inputs=collate_inputs(samples, processors),
        targets=targets,
        ids=[s.id for s in samples],
    )
