"""The contracts every modality honours: ``Processor`` (raw input -> tensors) and ``Encoder``
(tensors -> :class:`EncoderOutput`).

Mask convention: ``mask`` is boolean and ``True`` at valid (non-padding) positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from torch import Tensor, nn

from omnifuse.layers.transformer import set_gradient_checkpointing

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
