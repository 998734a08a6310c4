"""The assembled model: per-modality encoders -> one fusion -> named heads.

The model is built from parts that are already constructed (see :mod:`omnifuse.models.builder`);
it never computes a loss — tasks and objectives do that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
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


class EncodingCache:
    """Encoder outputs memoised by the identity of their input tensors (one training step).

    Tasks of a multi-task step that read the same batch feed the encoders the *same* tensors;
    with the cache they share one encoder pass per modality and its autograd graph, so a
    backward sums every task's gradient through that one pass. A task that changed its inputs
    (masked tokens, a subset of rows, an added ``token_mask``) holds new tensors and misses.

    Each entry keeps its input tensors alive, so no other tensor can reuse their ``id`` while
    the cache lives; the grad mode and train/eval mode are part of the key.

    Attributes:
        hits: Encoder passes saved.
        misses: Encoder passes run.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[object, ...], tuple[Mapping[str, Tensor], EncoderOutput]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(modality: str, inputs: Mapping[str, Tensor], training: bool) -> tuple[object, ...]:
        """What identifies one encoder pass: modality, modes and the input tensors' identity."""
        tensors = tuple((name, id(value)) for name, value in sorted(inputs.items()))
        return (modality, training, torch.is_grad_enabled(), tensors)

    def get(self, key: tuple[object, ...]) -> EncoderOutput | None:
        """The output stored under ``key`` (counted as a hit), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self.hits += 1
        return entry[1]

    def put(
        self, key: tuple[object, ...], inputs: Mapping[str, Tensor], out: EncoderOutput
    ) -> None:
        """Store ``out`` for ``inputs`` (counted as a miss: the encoder ran)."""
        self.misses += 1
        self._entries[key] = (dict(inputs), out)


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
        self._encoding_cache: EncodingCache | None = None

    @contextmanager
    def shared_encodings(self) -> Iterator[EncodingCache]:
        """Within the block, :meth:`encode` runs each modality's encoder once per distinct input
        (see :class:`EncodingCache`); a nested block shares the outer block's cache.

        With dropout in an encoder, tasks sharing a pass also share its dropout mask (without
        the block each task draws its own); in eval mode, or without dropout, the outputs and
        gradients equal those of separate passes.
        """
        if self._encoding_cache is not None:
            yield self._encoding_cache
            return
        self._encoding_cache = EncodingCache()
        try:
            yield self._encoding_cache
        finally:
            self._encoding_cache = None

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
        return {modality: self._encode_one(modality, batch[modality]) for modality in sorted(batch)}

    def _encode_one(self, modality: str, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """One modality's encoder output (from the step's cache when one is active)."""
        cache = self._encoding_cache
        key = EncodingCache.key(modality, inputs, self.training) if cache is not None else ()
        if cache is not None and (cached := cache.get(key)) is not None:
            return cached
        out: EncoderOutput = self.encoders[modality](inputs)
        present = inputs.get("present")
        if present is not None:
            keep = present.to(out.mask.device).bool()
            out = EncoderOutput(
                out.tokens, out.mask & keep[:, None], out.pooled * keep[:, None].to(out.pooled)
            )
        if cache is not None:
            cache.put(key, inputs, out)
        return out

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
