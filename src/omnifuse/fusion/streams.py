"""Stream helpers every fusion strategy shares: input checks, cleaning of padded positions,
modality-type embeddings, and concatenation/splitting of token streams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from omnifuse.fusion.base import Fusion
from omnifuse.modalities.base import EncoderOutput


def check_input_dims(input_dims: Mapping[str, int]) -> None:
    """Reject an empty or non-positive ``input_dims`` at build time, not at the first batch."""
    if not input_dims:
        raise ValueError("a fusion needs the width of at least one modality; input_dims is empty")
    bad = {m: d for m, d in input_dims.items() if d <= 0}
    if bad:
        raise ValueError(f"input_dims must be positive widths, got {bad}")


def check_batch(encoded: Mapping[str, EncoderOutput]) -> int:
    """The batch size all streams share; raises when shapes disagree."""
    for m, e in encoded.items():
        if e.tokens.dim() != 3 or e.mask.shape != e.tokens.shape[:2]:
            raise ValueError(
                f"{m}: expected tokens [B, N, D] and mask [B, N], got tokens "
                f"{tuple(e.tokens.shape)} and mask {tuple(e.mask.shape)}"
            )
    sizes = {m: int(encoded[m].tokens.shape[0]) for m in sorted(encoded)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"modalities disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def zero_padding(tokens: Tensor, mask: Tensor) -> Tensor:
    """Zero the invalid positions. ``[B, N, D], [B, N] -> [B, N, D]``.

    ``masked_fill`` rather than a multiply, so even NaN padding becomes an exact zero.
    """
    return tokens.masked_fill(~mask.unsqueeze(-1), 0.0)


def clean_streams(encoded: Mapping[str, EncoderOutput]) -> dict[str, EncoderOutput]:
    """Bool masks, zeroed padding, and zeroed ``pooled`` rows of samples lacking the modality.

    Encoders emit arbitrary values at padding and for an absent sample; zeroing them means no
    fusion ever reads those values, in the forward or the backward pass.
    """
    out = {}
    for m in sorted(encoded):
        e = encoded[m]
        mask = e.mask.bool()
        present = mask.any(dim=1, keepdim=True)  # (B, 1)
        out[m] = EncoderOutput(
            zero_padding(e.tokens, mask), mask, e.pooled.masked_fill(~present, 0.0)
        )
    return out


def prepare_streams(
    fusion: Fusion, encoded: Mapping[str, EncoderOutput]
) -> dict[str, EncoderOutput]:
    """Validate, clean and project the present streams to ``fusion.dim`` (sorted by modality).

    Cleaning runs before the projection (so padding never reaches a weight) and after it (so
    padding and absent samples are exact zeros in fusion space, not the projection bias).
    """
    fusion.present(encoded)
    check_batch(encoded)
    return clean_streams(fusion.project(clean_streams(encoded)))


def presence(streams: Mapping[str, EncoderOutput]) -> Tensor:
    """Which sample has which modality. ``-> [B, M]`` bool, columns in sorted modality order."""
    return torch.stack([streams[m].mask.any(dim=1) for m in sorted(streams)], dim=1)


def concat_streams(streams: Mapping[str, EncoderOutput]) -> tuple[Tensor, Tensor]:
    """Concatenate tokens and masks in sorted modality order.

    Returns:
        tokens ``[B, sum(N_m), D]`` and mask ``[B, sum(N_m)]``.
    """
    order = sorted(streams)
    tokens = torch.cat([streams[m].tokens for m in order], dim=1)
    mask = torch.cat([streams[m].mask for m in order], dim=1)
    return tokens, mask


def stream_segments(
    streams: Mapping[str, EncoderOutput], offset: int = 0
) -> dict[str, tuple[int, int]]:
    """Where each stream's tokens sit after :func:`concat_streams`, shifted by ``offset``
    (e.g. 1 behind a [CLS] token): ``{m: (start, end)}``."""
    segments = {}
    start = offset
    for m in sorted(streams):
        end = start + int(streams[m].tokens.shape[1])
        segments[m] = (start, end)
        start = end
    return segments


def split_streams(tokens: Tensor, streams: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
    """Inverse of :func:`concat_streams`: ``[B, sum(N_m), D]`` -> ``{m: [B, N_m, D]}``."""
    order = sorted(streams)
    sizes = [int(streams[m].tokens.shape[1]) for m in order]
    return dict(zip(order, torch.split(tokens, sizes, dim=1), strict=True))


class ModalityEmbedding(nn.Module):
    """A learned ``[D]`` vector per modality, added to every token of that modality's stream so
    attention over mixed streams can tell the modalities apart."""

    def __init__(self, modalities: Sequence[str], dim: int) -> None:
        super().__init__()
        self.table = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(dim) * 0.02) for m in modalities}
        )

    def forward(self, streams: Mapping[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        """Add each stream's embedding to its tokens (``[B, N_m, D]``, padding stays zero)."""
        return {
            m: EncoderOutput(zero_padding(s.tokens + self.table[m], s.mask), s.mask, s.pooled)
            for m, s in sorted(streams.items())
        }
