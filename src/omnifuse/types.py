"""The types every layer passes around, kept below all of them so none needs a higher layer.

* :data:`Inputs` (what encoders read, keyed by modality), :class:`Batch` (what the data layer
  yields: inputs + targets + ids) and :data:`IGNORE_INDEX`.
* :class:`Processor` (raw input -> tensors), :class:`Encoder` (tensors -> :class:`EncoderOutput`)
  and :class:`MediaError`: the contracts every modality honours.
* :class:`Fusion` (``dict[str, EncoderOutput]`` keyed by modality -> :class:`FusedOutput`).

They lived in ``data/collate.py``, ``modalities/base.py`` and ``fusion/base.py``, which still
re-export them (the documented places to import them from). Defined here, the registry, the
tasks and the fusions depend on the contracts without importing the packages that implement
them: the registry <-> modalities and tasks -> data imports broke the layering.

Mask convention: ``mask`` is boolean and ``True`` at valid (non-padding) positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

from torch import Tensor, nn

from omnifuse.layers.transformer import set_gradient_checkpointing

IGNORE_INDEX = -100
"""Class/int target of a sample that lacks the field (``cross_entropy``'s default ignore_index)."""


Inputs = dict[str, dict[str, Tensor]]
"""Processed inputs keyed by modality, e.g. ``{"image": {"pixel_values": [B, 3, H, W]}}``."""


class Batch(TypedDict):
    """What the data layer yields: ``inputs`` (:data:`Inputs`), ``targets`` by field, ``ids``."""

    inputs: Inputs
    targets: dict[str, Any]
    ids: list[str]


Sample = TypeVar("Sample")


class MediaError(ValueError):
    """A raw input (file or value) that cannot be processed; always names the path/source."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass
class EncoderOutput:
    """What every encoder returns, whatever the modality.

    Attributes:
        tokens: ``[B, N, D]`` per-position features.
        mask: ``[B, N]`` bool, True at valid positions.
        pooled: ``[B, D]`` one vector per sample.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[-1])


class Encoder(nn.Module, ABC):
    """Base class of all encoders. Subclasses set ``dim`` (output width) in ``__init__``.

    ``forward`` takes the batch dict a matching :class:`Processor` produced.
    """

    modality: ClassVar[str]
    dim: int

    @abstractmethod
    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """Encode a processed batch."""

    def save_assets(self, directory: Path) -> dict[str, Any]:
        """Write files the encoder needs besides its weights (e.g. an HF ``config.json``) into
        ``directory`` and return config-field updates that point at them (relative to the
        model directory). Default: nothing to write."""
        return {}

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute activations in backward to save memory (no change to outputs)."""
        set_gradient_checkpointing(self, enabled)


class Processor(ABC, Generic[Sample]):
    """Turns raw inputs (paths, arrays, strings) into the tensors an encoder consumes.

    ``load`` handles one raw input and raises :class:`MediaError` (naming the source) when it
    cannot; ``collate`` pads a list of loaded samples into a batch with masks. ``training``
    switches augmentation on.
    """

    modality: ClassVar[str]

    def __init__(self) -> None:
        self.training = False

    def train(self, mode: bool = True) -> Processor[Sample]:
        self.training = mode
        return self

    def eval(self) -> Processor[Sample]:
        return self.train(False)

    @property
    def augmenting(self) -> bool:
        """Whether :meth:`load` draws random augmentation now (False: same input, same output,
        so its results may be cached)."""
        return False

    @abstractmethod
    def load(self, raw: Any) -> Sample:
        """One raw input -> one processed sample (no batch dimension)."""

    @abstractmethod
    def collate(self, samples: Sequence[Sample]) -> dict[str, Tensor]:
        """Samples -> batch dict (padded, with masks) for the encoder."""

    def __call__(self, raws: Sequence[Any]) -> dict[str, Tensor]:
        """Load and collate a list of raw inputs."""
        return self.collate([self.load(raw) for raw in raws])

    def save(self, directory: Path) -> dict[str, Any]:
        """Write processor files (tokenizer, ...) into ``directory``; return config-field updates
        that point at them, relative to the model directory. Default: nothing to write."""
        return {}


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
                "(concat, parallel or hybrid co-attention)"
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
