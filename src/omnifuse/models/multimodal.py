"""The assembled model: per-modality encoders -> one fusion -> named heads.

The model is built from parts that are already constructed (see :mod:`omnifuse.models.builder`);
it never computes a loss — tasks and objectives do that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from omnifuse.config.base import FUSED
from omnifuse.config.model import ModelConfig
from omnifuse.fusion.base import FusedOutput, Fusion
from omnifuse.layers.transformer import set_gradient_checkpointing
from omnifuse.modalities.base import Encoder, EncoderOutput


@dataclass
class ModelOutput:
    """Everything one forward pass produces.

    Attributes:
        encoded: per present modality, its encoder output (``tokens [B, N_m, D_m]`` ...).
        fused: the fusion output (``tokens [B, N, D]``, ``mask``, ``pooled [B, D]``).
        heads: per head whose source was present, its output (e.g. logits ``[B, C]``).
    """

    encoded: dict[str, EncoderOutput]
    fused: FusedOutput
    heads: dict[str, Tensor] = field(default_factory=dict)


class MultimodalModel(nn.Module):
    """Encoders keyed by modality, a fusion, and heads keyed by name.

    Args:
        encoders: one :class:`Encoder` per configured modality.
        fusion: a :class:`Fusion` built for exactly those modalities.
        heads: prediction modules taking an :class:`EncoderOutput`.
        head_sources: per head, ``"fused"`` or the modality whose encoder output it reads.
        config: the model config it was built from (saved with the weights).
    """

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        fusion: Fusion,
        heads: Mapping[str, nn.Module],
        head_sources: Mapping[str, str],
        config: ModelConfig,
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.heads = nn.ModuleDict(dict(heads))
        self.head_sources = dict(head_sources)
        self.config = config

    def encoder(self, modality: str) -> Encoder:
        """The encoder of ``modality`` (typed access into the ModuleDict)."""
        encoder = self.encoders[modality]
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoders[{modality!r}] is a {type(encoder).__name__}, not an Encoder")
        return encoder

    @property
    def modalities(self) -> list[str]:
        """Configured modalities, sorted."""
        return sorted(self.encoders)

    def encode(self, batch: Mapping[str, Mapping[str, Tensor]]) -> dict[str, EncoderOutput]:
        """Run the encoder of every modality present in ``batch`` (others are ignored).

        A modality dict may carry ``present`` (``[B]`` bool): samples without that modality get
        an all-False mask and a zero pooled vector, so fusion treats them as missing.
        """
        unknown = sorted(set(batch) - set(self.encoders))
        if unknown:
            raise ValueError(
                f"batch has modalities {unknown} this model has no encoder for; "
                f"configured: {self.modalities}"
            )
        encoded = {}
        for modality in sorted(batch):
            inputs = batch[modality]
            out = self.encoders[modality](inputs)
            present = inputs.get("present")
            if present is not None:
                keep = present.to(out.mask.device).bool()
                out = EncoderOutput(
                    out.tokens, out.mask & keep[:, None], out.pooled * keep[:, None].to(out.pooled)
                )
            encoded[modality] = out
        return encoded

    def reads_fusion(self, head: str) -> bool:
        """Whether ``head`` reads the fusion output (else one modality's encoder output)."""
        return self.head_sources[head] == FUSED

    def features(
        self,
        head: str,
        encoded: Mapping[str, EncoderOutput],
        fused: FusedOutput | None = None,
    ) -> EncoderOutput:
        """What ``head`` reads: the fusion of ``encoded`` (``fused`` when given, so a caller
        that already fused does not fuse twice) or its source modality's encoder output.

        Raises:
            ValueError: the head reads a modality that was not encoded.
        """
        if self.reads_fusion(head):
            return self.fusion(encoded) if fused is None else fused
        source = self.head_sources[head]
        if source not in encoded:
            raise ValueError(
                f"head {head!r} reads {source!r}, which was not encoded (got {sorted(encoded)})"
            )
        return encoded[source]

    def run_head(self, head: str, batch: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
        """Encode ``batch``, fuse only if ``head`` reads the fusion, apply ``head``."""
        output: Tensor = self.heads[head](self.features(head, self.encode(batch)))
        return output

    def forward(self, batch: Mapping[str, Mapping[str, Tensor]]) -> ModelOutput:
        """Encode, fuse and apply every head whose source is available."""
        encoded = self.encode(batch)
        fused = self.fusion(encoded)
        heads = {}
        for name, head in self.heads.items():
            if self.reads_fusion(name) or self.head_sources[name] in encoded:
                heads[name] = head(self.features(name, encoded, fused))
        return ModelOutput(encoded, fused, heads)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute activations during backward in every Transformer stack."""
        set_gradient_checkpointing(self, enabled)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
