"""``mlm`` task: special tokens are never masked, text alone or fused, overfitting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from task_helpers import build, check_contract, make_batch, overfit

from omnifuse.modalities.text import TextProcessor
from omnifuse.tasks import MLMTask


def test_contract(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["mlm", "mlm_fused"])
    batch = make_batch(processors, media)
    for name in ("mlm", "mlm_fused"):
        out = tasks[name](model, batch)
        check_contract(out)
        assert set(out) == {"loss", "accuracy", "perplexity"}


def test_special_tokens_are_never_masked(media: dict[str, Callable[..., Path]]) -> None:
    _, processors, tasks = build(["mlm"])
    task = tasks["mlm"]
    assert isinstance(task, MLMTask)
    processor = processors["text"]
    assert isinstance(processor, TextProcessor)
    specials = torch.tensor(
        sorted(i for i in processor.tokenizer.specials.values() if i is not None)
    )
    assert task.objective.special_ids == tuple(specials.tolist())
    text = make_batch(processors, media, ("text",))["inputs"]["text"]
    ids, valid = text["input_ids"], text["attention_mask"]
    for seed in range(10):
        masked = task.objective.mask(ids, valid, torch.Generator().manual_seed(seed))
        chosen = masked.labels != -100
        assert chosen.any(dim=1).all(), "every row gets at least one masked token"
        assert not torch.isin(ids[chosen], specials).any()
        assert not chosen[~valid].any()


def test_fused_head_reads_the_text_segment(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, _ = build(["mlm_fused"])
    batch = make_batch(processors, media)
    encoded = model.encode(batch["inputs"])
    fused = model.fusion(encoded)
    segment = fused.segment("text")
    text = batch["inputs"]["text"]
    assert segment.tokens.shape[:2] == text["input_ids"].shape
    # The concat fusion's mask over the text segment is exactly the text attention mask.
    assert torch.equal(segment.mask, text["attention_mask"])
    alone = model.fusion({"text": encoded["text"]}).segment("text")
    assert torch.equal(alone.mask, text["attention_mask"])


def test_overfits_a_fixed_batch(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["mlm"])
    batch = make_batch(processors, media, ("text",))
    first, last = overfit(tasks["mlm"], model, batch, steps=30, lr=1e-2, reseed=1)
    assert last < first / 3


def test_fused_variant_overfits(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["mlm_fused"])
    batch = make_batch(processors, media)
    first, last = overfit(tasks["mlm_fused"], model, batch, steps=30, lr=1e-2, reseed=1)
    assert last < first / 3


@pytest.mark.parametrize("fusion", ["parallel", "hybrid"])
def test_fused_head_works_with_every_fusion_that_keeps_text_positions(
    fusion: str, media: dict[str, Callable[..., Path]]
) -> None:
    # Was a config error ("only concat"); FusedOutput.segments says where text tokens are.
    model, processors, tasks = build(["mlm_fused"], [f"model.fusion={{type: {fusion}, dim: 32}}"])
    batch = make_batch(processors, media)
    out = tasks["mlm_fused"](model, batch)
    assert torch.isfinite(out["loss"])
    fused = model.fusion(model.encode(batch["inputs"]))
    assert fused.segment("text").mask.shape == batch["inputs"]["text"]["attention_mask"].shape


def test_fused_head_on_a_query_fusion_names_the_problem(
    media: dict[str, Callable[..., Path]],
) -> None:
    model, processors, tasks = build(
        ["mlm_fused"], ["model.fusion={type: hybrid, mode: resampler, dim: 32, num_queries: 4}"]
    )
    with pytest.raises(ValueError, match="hold no text segment"):
        tasks["mlm_fused"](model, make_batch(processors, media))
