"""``captioning`` task: target tokenisation, teacher forcing, overfitting then greedy decoding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from task_helpers import CAPTIONS, build, check_contract, make_batch, overfit

from omnifuse.heads import CaptionDecoder
from omnifuse.models import load, save
from omnifuse.tasks import CaptioningTask


def test_contract(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["captioning"])
    out = tasks["captioning"](model, make_batch(processors, media))
    check_contract(out)
    assert set(out) == {"loss", "accuracy", "perplexity"}


def test_targets_end_in_eos_and_are_truncated() -> None:
    _, _, tasks = build(["captioning"], ["model.heads.captioner.max_length=6"])
    task = tasks["captioning"]
    assert isinstance(task, CaptioningTask)
    eos, pad = task.tokenizer.eos_id, task.tokenizer.pad_id
    ids, mask = task.tokenize(["ab", "a long caption", None], torch.device("cpu"))
    assert ids.shape == (3, 6)
    assert ids[0, :3].tolist() == [*task.tokenizer.encode("ab"), eos] and ids[0, 3] == pad
    assert ids[1].tolist() == [*task.tokenizer.encode("a long caption")[:5], eos]
    assert mask.sum(dim=1).tolist() == [3, 6, 0]  # no text: nothing is scored
    picked, _ = task.tokenize([["x"], []], torch.device("cpu"))
    assert picked[0, 0] == task.tokenizer.encode("x")[0] and picked[1].tolist() == [pad, pad]


def test_overfits_then_greedy_decoding_writes_the_captions(
    media: dict[str, Callable[..., Path]],
) -> None:
    model, processors, tasks = build(["captioning"])
    task = tasks["captioning"]
    assert isinstance(task, CaptioningTask)
    batch = make_batch(processors, media)
    first, last = overfit(task, model, batch, steps=100, lr=1e-2)
    assert last < first / 5
    model.eval()
    head = model.heads["captioner"]
    assert isinstance(head, CaptionDecoder)
    with torch.no_grad():
        fused = model.features("captioner", model.encode({"image": batch["inputs"]["image"]}))
        ids = head.generate(fused)
    texts = [task.tokenizer.decode(row.tolist()) for row in ids]
    assert texts == CAPTIONS


def test_tied_decoder_survives_save_and_load(
    tmp_path: Path, media: dict[str, Callable[..., Path]]
) -> None:
    model, processors, _ = build(["captioning"])
    model.eval()
    loaded = load(save(tmp_path / "m", model, processors)).model
    head = loaded.heads["captioner"]
    assert isinstance(head, CaptionDecoder) and head.lm_head.weight is head.token_embed.weight
    batch = make_batch(processors, media, ("image",), size=2)
    outputs = [m(batch["inputs"]).heads["captioner"] for m in (model, loaded)]
    assert outputs[0].dtype == torch.long and torch.equal(outputs[0], outputs[1])
