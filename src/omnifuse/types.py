"""Types every layer shares: processed inputs, a data batch, the ignored-label index.

One home so that "a batch" means one thing: :data:`Inputs` is what the model's encoders read
(modality -> tensor dict), :class:`Batch` is what the data layer yields (inputs + targets + ids).
"""

from __future__ import annotations

from typing import Any, TypedDict

from torch import Tensor

IGNORE_INDEX = -100
"""Class/int target of a sample that lacks the field (``cross_entropy``'s default ignore_index)."""

Inputs = dict[str, dict[str, Tensor]]
"""Processed inputs keyed by modality, e.g. ``{"image": {"pixel_values": [B, 3, H, W]}}``."""


class Batch(TypedDict):
    """What the data layer yields: ``inputs`` (:data:`Inputs`), ``targets`` by field, ``ids``."""

    inputs: Inputs
    targets: dict[str, Any]
    ids: list[str]
