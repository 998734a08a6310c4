"""The fusion contract: ``dict[str, EncoderOutput]`` keyed by modality -> :class:`FusedOutput`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from omnifuse.modalities.base import EncoderOutput


@dataclass
class FusedOutput(EncoderOutput):
    """Fused features; the same ``tokens/mask/pooled`` fields as :class:`EncoderOutput`.

    Attributes:
        tokens: ``[B, N, D]`` fused token sequence (what decoders cross-attend to).
        mask: ``[B, N]`` bool, True at valid positions.
        pooled: ``[B, D]`` one fused vector per sample.
        modality_pooled: per present modality, its ``[B, D]`` pooled vector in fusion space
            (the dual-encoder embeddings contrastive objectives use).
        segments: per present modality whose tokens keep their positions in ``tokens``, its
            ``(start, end)`` slice (e.g. text tokens aligned with ``input_ids`` for MLM on the
            fusion); empty for fusions that resample into new tokens (perceiver queries).
    """

    modality_pooled: dict[str, Tensor] = field(default_factory=dict)
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)

    def segment(self, modality: str) -> EncoderOutput:
        """``modality``'s positions of the fused tokens: ``tokens [B, N_m, D]``, ``mask``, and the
        fused ``pooled``.

        Raises:
            ValueError: this fusion's output does not keep that modality's token positions.
        """
        if modality not in self.segments:
            kept = ", ".join(sorted(self.segments)) or "none"
            raise ValueError(
                f"the fused tokens hold no {modality} segment (segments: {kept}); a head that "
                f"reads {modality} tokens from the fusion needs a fusion that keeps them "
                "(concat, parallel or hybrid without queries)"
            )
        start, end = self.segments[modality]
        return EncoderOutput(self.tokens[:, start:end], self.mask[:, start:end], self.pooled)


class Fusion(nn.Module, ABC):
    """Base of every fusion strategy.

    Args:
        input_dims: encoder output width per configured modality.
        dim: fused width (every output field has this width).

    ``forward`` accepts any non-empty subset of the configured modalities and iterates them in
    sorted order so results never depend on dict insertion order.
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int) -> None:
        super().__init__()
        self.modalities = sorted(input_dims)
        self.dim = dim
        # Per-modality projection into the shared width: the one place widths meet.
        self.input_proj = nn.ModuleDict(
            {m: nn.Linear(d, dim) if d != dim else nn.Identity() for m, d in input_dims.items()}
        )

    def present(self, encoded: Mapping[str, EncoderOutput]) -> list[str]:
        """Sorted present modalities; rejects an empty batch or unknown modality."""
        unknown = sorted(set(encoded) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"fusion got modalities {unknown} it was not built for; "
                f"configured: {self.modalities}"
            )
        if not encoded:
            raise ValueError(f"fusion needs at least one of {self.modalities}, got none")
        return sorted(encoded)

    def project(self, encoded: Mapping[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        """Project every present stream to ``dim`` (tokens and pooled)."""
        out = {}
        for m in self.present(encoded):
            e = encoded[m]
            proj = self.input_proj[m]
            out[m] = EncoderOutput(proj(e.tokens), e.mask, proj(e.pooled))
        return out

    @abstractmethod
    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusedOutput:
        """Fuse the present modalities."""
