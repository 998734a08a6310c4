"""``matching`` task: mined negatives are never the positive, the fused head learns pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from task_helpers import build, check_contract, make_batch, overfit

from omnifuse.tasks import MatchingTask


def test_contract(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["matching"])
    out = tasks["matching"](model, make_batch(processors, media))
    check_contract(out)
    assert set(out) == {"loss", "accuracy"}


def test_negatives_are_never_the_positive() -> None:
    task = MatchingTask("m", 1.0, ("image", "text"), "image", "text", "itm", "a", "b")
    for seed in range(20):
        torch.manual_seed(seed)
        embed = torch.randn(5, 8)
        pairs = task.sample_pairs(embed, embed + 0.01 * torch.randn(5, 8))
        assert pairs.labels.tolist() == [1] * 5 + [0] * 10
        positives = pairs.labels == 1
        assert torch.equal(pairs.index_a[positives], pairs.index_b[positives])
        assert bool((pairs.index_a[~positives] != pairs.index_b[~positives]).all())


def test_hard_negatives_follow_similarity() -> None:
    task = MatchingTask("m", 1.0, ("image", "text"), "image", "text", "itm", "a", "b", 0.01)
    a = torch.eye(3)
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.1]])  # b2 looks like a0
    pairs = task.sample_pairs(a, b)
    assert int(pairs.index_b[3]) == 2  # a0's negative: the text most similar to it
    assert int(pairs.index_a[8]) == 0  # b2's negative: the image most similar to it


def test_one_sample_batch_gives_zero_loss(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["matching"])
    out = tasks["matching"](model, make_batch(processors, media, size=1))
    assert float(out["loss"].detach()) == 0.0 and out["loss"].requires_grad


def test_overfits_a_fixed_batch(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["matching"])
    batch = make_batch(processors, media)
    first, last = overfit(tasks["matching"], model, batch, steps=70, lr=1e-3)
    assert last < first / 3
