"""Length-bucketed batches (``data.bucket_by_length``): every sample once per epoch and per
slot, batches of similar length, seeded and deterministic, exact mid-epoch resume."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from data_helpers import CharProcessor, write_jsonl

from omnifuse.data.bucketing import bucket_batches, sample_length, split_position
from omnifuse.data.collate import TargetField
from omnifuse.data.decode import SampleDecoder
from omnifuse.data.sources import open_source
from omnifuse.data.streaming import StreamingDataset, StreamingLoader
from omnifuse.types import Batch

LABEL = {"label": TargetField("label", "class", ("a", "b", "c"))}
N = 41


@pytest.fixture
def varied(tmp_path: Path) -> Path:
    """41 texts of 1-40 characters in random order."""
    rng = random.Random(3)
    rows = [
        {"id": f"s{i:03d}", "text": "x" * rng.randint(1, 40), "label": "abc"[i % 3]}
        for i in range(N)
    ]
    return write_jsonl(tmp_path / "train.jsonl", rows)


def loader(
    path: Path, bucket: int, num_workers: int = 0, rank: int = 0, world: int = 1, **kw: Any
) -> StreamingLoader:
    dataset = StreamingDataset(
        open_source(path),
        SampleDecoder({"text": CharProcessor()}, LABEL, training=False),
        4,
        shuffle=True,
        seed=5,
        bucket=bucket,
        **kw,
    )
    return StreamingLoader(dataset, num_workers, rank=rank, world_size=world)


def ids(batches: list[Batch]) -> list[list[str]]:
    return [list(b["ids"]) for b in batches]


def padding(batches: list[Batch]) -> int:
    """Padded positions over all batches."""
    return sum(int((~b["inputs"]["text"]["attention_mask"]).sum()) for b in batches)


def test_bucket_batches_groups_by_length_and_keeps_every_index() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = bucket_batches(lengths, 3, None)
    assert batches == [[1, 5, 3], [0, 4, 6], [2]]
    shuffled = bucket_batches(lengths, 3, random.Random(0))
    assert sorted(map(sorted, shuffled)) == sorted(map(sorted, batches))
    assert split_position(13, 8) == (8, 5) and split_position(16, 8) == (16, 0)


def test_every_sample_once_with_less_padding(varied: Path) -> None:
    plain = list(loader(varied, 0))
    bucketed_loader = loader(varied, 3)
    bucketed = list(bucketed_loader)
    assert len(bucketed) == len(plain) == len(bucketed_loader) == 11
    assert sorted(i for b in ids(bucketed) for i in b) == [f"s{i:03d}" for i in range(N)]
    assert padding(bucketed) < padding(plain) / 2  # measured: 182 against 485
    # Windows of 3 batches are sorted, then the batch order is shuffled: not shortest first.
    longest = [int(b["inputs"]["text"]["attention_mask"].sum(1).max()) for b in bucketed]
    assert longest != sorted(longest)


def test_seeded_deterministic_and_reshuffled_per_epoch(varied: Path) -> None:
    first, second = loader(varied, 3), loader(varied, 3)
    epoch0 = ids(list(first))
    assert ids(list(second)) == epoch0
    assert ids(list(first)) != epoch0  # the next epoch: another order


def test_ranks_and_workers_read_disjoint_samples(varied: Path) -> None:
    seen: list[str] = []
    for rank in (0, 1):
        batches = list(loader(varied, 2, num_workers=2, rank=rank, world=2))
        part = [i for b in ids(batches) for i in b]
        assert not set(part) & set(seen)
        seen += part
    assert sorted(seen) == [f"s{i:03d}" for i in range(N)]


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_mid_epoch_resume(varied: Path, workers: int) -> None:
    full = loader(varied, 3, num_workers=workers)
    epoch0, epoch1 = ids(list(full)), ids(list(full))
    for k in (1, 4, 6):  # inside a window, at a window's end, after a resumed window
        first = loader(varied, 3, num_workers=workers)
        iterator = iter(first)
        head = [list(next(iterator)["ids"]) for _ in range(k)]
        state = first.state_dict()
        del iterator
        resumed = loader(varied, 3, num_workers=workers)
        resumed.load_state_dict(state)
        assert head + ids(list(resumed)) == epoch0
        assert ids(list(resumed)) == epoch1


def test_drop_last_drops_only_partial_batches(varied: Path) -> None:
    batches = list(loader(varied, 3, drop_last=True))
    assert len(batches) == N // 4 and all(len(b["ids"]) == 4 for b in batches)


def test_sample_length_of_each_kind() -> None:
    class Framed(CharProcessor):
        def sample_length(self, sample: Any) -> int:
            return 99

    processors = {"text": CharProcessor(), "audio": Framed()}
    assert sample_length({"text": torch.zeros(7)}, processors) == 7
    assert sample_length({"text": [1, 2, 3], "audio": object()}, processors) == 102
    with pytest.raises(TypeError, match="give its processor a sample_length"):
        sample_length({"text": object()}, processors)


def test_bucketed_batches_give_the_padded_batches_per_sample_losses(
    tmp_path: Path, tiny_whisper_asr: Path, media: dict[str, Callable[..., Path]]
) -> None:
    """Whisper with ``window: input``: each clip's loss is the same in a length-bucketed batch
    as in a shuffled, more padded batch (padding is masked, so batching is invisible)."""
    from omnifuse.config import validate_config
    from omnifuse.data.datamodule import OmnifuseDataModule
    from omnifuse.models import build_model
    from omnifuse.tasks import build_tasks

    rows = []
    for i in range(12):
        media["wav"](f"u{i}.wav", seconds=0.1 + 0.07 * i, freq=200.0 + 50 * i)
        rows.append({"id": f"u{i:02d}", "audio": f"u{i}.wav", "transcript": "ab"[: 1 + i % 2]})
    manifest = write_jsonl(tmp_path / "train.jsonl", rows)
    path = str(tiny_whisper_asr)
    run = validate_config(
        {
            "model": {
                "encoders": {"audio": {"type": "hf", "path": path, "window": "input"}},
                "heads": {"asr": {"type": "whisper_decoder", "path": path, "max_length": 8}},
            },
            "data": {"train": str(manifest), "batch_size": 4, "augment": False},
            "tasks": {
                "asr": {
                    "type": "captioning",
                    "head": "asr",
                    "target": "transcript",
                    "inputs": ["audio"],
                }
            },
        }
    )
    model, processors = build_model(run.model)
    task = build_tasks(run, model, processors)["asr"]
    model.eval()

    def per_sample_losses(bucket: int) -> tuple[dict[str, float], int]:
        data = run.data.model_copy(update={"bucket_by_length": bucket})
        losses, frames = {}, 0
        for batch in OmnifuseDataModule(data, processors=processors).train_dataloader():
            audio = batch["inputs"]["audio"]
            frames += audio["features"].shape[0] * audio["features"].shape[1]
            for i, sample in enumerate(batch["ids"]):
                one: Batch = {
                    "inputs": {"audio": {k: v[i : i + 1] for k, v in audio.items()}},
                    "targets": {"transcript": batch["targets"]["transcript"][i : i + 1]},
                    "ids": [sample],
                }
                with torch.no_grad():
                    losses[sample] = float(task(model, one)["loss"])
        return losses, frames

    padded, padded_frames = per_sample_losses(0)
    bucketed, bucketed_frames = per_sample_losses(3)
    assert sorted(bucketed) == sorted(padded) == [f"u{i:02d}" for i in range(12)]
    assert bucketed_frames < padded_frames
    for sample, loss in padded.items():
        assert bucketed[sample] == pytest.approx(loss, abs=1e-5), sample
