"""Fixtures for the fusion tests: tiny fusion configs of every type/mode and synthetic
``EncoderOutput`` batches with ragged masks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from omnifuse.config.fusion import ConcatFusionConfig, HybridFusionConfig, ParallelFusionConfig
from omnifuse.fusion.base import Fusion
from omnifuse.fusion.concat import build_concat
from omnifuse.fusion.hybrid import build_hybrid
from omnifuse.fusion.parallel import build_parallel
from omnifuse.modalities.base import EncoderOutput

DIMS = {"audio": 24, "image": 48, "text": 32, "video": 40}  # text == fusion dim: Identity proj
LENGTHS = {"audio": 5, "image": 4, "text": 6, "video": 3}
BATCH = 3
NUM_QUERIES = 6
BUILDERS = {"concat": build_concat, "parallel": build_parallel, "hybrid": build_hybrid}


@dataclass(frozen=True)
class Case:
    """One fusion type/mode under test and its expected fused length."""

    name: str
    config: Any

    def build(self, dims: dict[str, int] | None = None) -> Fusion:
        return BUILDERS[self.config.type](self.config, DIMS if dims is None else dims)

    @property
    def empty_pooled_is_zero(self) -> bool:
        """Whether a sample with no modality at all gets a zero ``pooled`` (see docs/fusion.md)."""
        return self.name.startswith("parallel") or self.name == "hybrid-co_attention"

    def expected_length(self, modalities: Iterable[str]) -> int:
        total = sum(LENGTHS[m] for m in modalities)
        if self.name == "concat":
            return 1 + total  # [CLS]
        if self.name == "hybrid-resampler":
            return NUM_QUERIES
        return total


_DEPTH = {"dim": 32, "num_layers": 2, "num_heads": 4, "mlp_ratio": 2.0}
CASES = [
    Case("concat", ConcatFusionConfig(**_DEPTH)),
    Case("parallel-gated", ParallelFusionConfig(dim=32, pooling="gated")),
    Case("parallel-attention", ParallelFusionConfig(dim=32, pooling="attention", num_heads=4)),
    Case("parallel-mean", ParallelFusionConfig(dim=32, pooling="mean")),
    Case("hybrid-co_attention", HybridFusionConfig(mode="co_attention", **_DEPTH)),
    Case(
        "hybrid-resampler",
        HybridFusionConfig(mode="resampler", num_queries=NUM_QUERIES, **_DEPTH),
    ),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def make_batch(
    modalities: Iterable[str] = DIMS, batch: int = BATCH, seed: int = 0
) -> dict[str, EncoderOutput]:
    """Random streams; sample ``i`` has ``N_m - i`` valid positions (at least 1), the padding
    holds large garbage values so a fusion that reads it would visibly change."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for m in modalities:
        n, d = LENGTHS[m], DIMS[m]
        valid = torch.tensor([max(1, n - i) for i in range(batch)])
        mask = torch.arange(n)[None, :] < valid[:, None]  # (B, N)
        tokens = torch.randn(batch, n, d, generator=gen)
        tokens = torch.where(
            mask[..., None], tokens, 1e3 * torch.randn(tokens.shape, generator=gen)
        )
        out[m] = EncoderOutput(tokens, mask, torch.randn(batch, d, generator=gen))
    return out


@pytest.fixture
def all_cases() -> list[Case]:
    """Every fusion type/mode under test (the registry coverage test checks it is complete)."""
    return CASES


@pytest.fixture
def batch() -> Callable[..., dict[str, EncoderOutput]]:
    """Factory: ``batch(modalities=all, batch=3, seed=0)``."""
    return make_batch
