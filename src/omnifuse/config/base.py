"""Base class and shared validators for every config model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

MODALITIES = ("audio", "image", "text", "video")
"""The four modality names: encoder keys, manifest input fields, batch input keys."""

FUSED = "fused"
"""The ``source`` of a head that reads the fusion output (any other source names a modality)."""


class StrictModel(BaseModel):
    """Pydantic model that refuses unknown keys and validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class TransformerDims(StrictModel):
    """Width/depth fields shared by every Transformer component.

    Vocabulary (used everywhere): ``dim`` (width), ``num_layers``, ``num_heads``, ``mlp_ratio``.
    """

    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TransformerDims:
        if self.dim <= 0 or self.num_heads <= 0 or self.num_layers < 0:
            raise ValueError(
                f"dim ({self.dim}) and num_heads ({self.num_heads}) must be positive and "
                f"num_layers ({self.num_layers}) non-negative"
            )
        if self.dim % self.num_heads != 0:
            raise ValueError(
                f"dim={self.dim} must be divisible by num_heads={self.num_heads} "
                f"(e.g. num_heads={_divisor_hint(self.dim, self.num_heads)})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        return self


def _divisor_hint(dim: int, heads: int) -> int:
    """Closest divisor of ``dim`` to ``heads``, to suggest a fix."""
    divisors = [d for d in range(1, dim + 1) if dim % d == 0]
    return min(divisors, key=lambda d: abs(d - heads))


def model_dump_plain(model: BaseModel) -> dict[str, Any]:
    """JSON-compatible dict (paths as strings) for YAML output."""
    return model.model_dump(mode="json")
