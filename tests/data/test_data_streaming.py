"""Streaming: exact mid-epoch resume with 2 workers, rank/worker splits, epochs, bad samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from data_helpers import CharProcessor, write_jsonl

from omnifuse.data.collate import TargetField
from omnifuse.data.decode import BadSamplePolicy, SampleDecoder, TooManyBadSamples
from omnifuse.data.shards import write_shards
from omnifuse.data.sources import open_source
from omnifuse.data.streaming import StreamingDataset, StreamingLoader
from omnifuse.modalities.base import MediaError
from omnifuse.types import Batch

LABEL = {"label": TargetField("label", "class", ("a", "b", "c"))}


def make_loader(
    path: Path,
    num_workers: int = 0,
    batch_size: int = 3,
    rank: int = 0,
    world_size: int = 1,
    policy: BadSamplePolicy | None = None,
    **options: Any,
) -> StreamingLoader:
    options = {"shuffle": True, "shuffle_buffer": 4, "seed": 7, **options}
    training = options.pop("training", True)
    dataset = StreamingDataset(
        open_source(path),
        SampleDecoder({"text": CharProcessor()}, LABEL, training=training),
        batch_size,
        policy=policy,
        **options,
    )
    return StreamingLoader(dataset, num_workers, rank=rank, world_size=world_size)


def signature(batch: Batch) -> tuple[Any, ...]:
    """Everything a batch carries, comparable with ==."""
    text = batch["inputs"]["text"]
    return (tuple(batch["ids"]), text["input_ids"].tolist(), batch["targets"]["label"].tolist())


@pytest.fixture(params=["manifest", "shards"])
def dataset_path(request: pytest.FixtureRequest, text_manifest: Callable[..., Path]) -> Path:
    manifest = text_manifest(29)
    if request.param == "manifest":
        return manifest
    write_shards(manifest, manifest.parent / "shards", shard_size=4)  # 8 shards, last has 1
    return manifest.parent / "shards"


def test_exact_mid_epoch_resume_with_two_workers(dataset_path: Path) -> None:
    full = make_loader(dataset_path, num_workers=2)
    epoch0 = [signature(b) for b in full]
    epoch1 = [signature(b) for b in full]
    assert len(epoch0) == len(full) >= 10
    assert sorted(i for s in epoch0 for i in s[0]) == [f"s{i:03d}" for i in range(29)]
    assert epoch0 != epoch1  # reshuffled (and re-augmented) every epoch

    for k in (3, 8):
        first = make_loader(dataset_path, num_workers=2)
        iterator = iter(first)
        head = [signature(next(iterator)) for _ in range(k)]
        state = first.state_dict()
        del iterator  # interrupted: the workers go away

        resumed = make_loader(dataset_path, num_workers=2)
        resumed.load_state_dict(state)
        assert head + [signature(b) for b in resumed] == epoch0  # rest of epoch 0
        assert [signature(b) for b in resumed] == epoch1  # and the next epoch as well


def test_state_saved_at_epoch_end_starts_the_next_epoch(text_manifest: Callable[..., Path]) -> None:
    path = text_manifest(10)
    loader = make_loader(path)
    list(loader)
    epoch1 = [signature(b) for b in loader]
    fresh = make_loader(path)
    list(fresh)
    resumed = make_loader(path)
    resumed.load_state_dict(fresh.state_dict())
    assert [signature(b) for b in resumed] == epoch1
    assert resumed.epoch == 1


def test_resume_refuses_other_worker_counts(text_manifest: Callable[..., Path]) -> None:
    state = make_loader(text_manifest(6), num_workers=0).state_dict()
    with pytest.raises(
        ValueError, match="saved with num_workers=1 but this loader has num_workers=2"
    ):
        make_loader(text_manifest(6), num_workers=2).load_state_dict(state)


@pytest.mark.parametrize("source", ["manifest", "few-shards", "many-shards"])
def test_ranks_and_workers_partition_the_data(
    text_manifest: Callable[..., Path], source: str
) -> None:
    path = text_manifest(23)
    if source != "manifest":
        size = 12 if source == "few-shards" else 3  # 2 shards < 4 slots; 8 shards >= 4 slots
        write_shards(path, path.parent / "s", shard_size=size)
        path = path.parent / "s"
    seen: list[list[str]] = []
    for rank in (0, 1):
        loader = make_loader(path, num_workers=2, batch_size=2, rank=rank, world_size=2)
        batches = list(loader)
        assert len(batches) == len(loader)
        seen.append([i for b in batches for i in b["ids"]])
    assert set(seen[0]).isdisjoint(seen[1])
    assert sorted(seen[0] + seen[1]) == [f"s{i:03d}" for i in range(23)]


def test_even_mode_gives_every_rank_the_same_batch_count(
    text_manifest: Callable[..., Path],
) -> None:
    path = text_manifest(23)
    write_shards(path, path.parent / "s", shard_size=5)  # shards of 5,5,5,5,3
    counts = []
    for rank in (0, 1):
        loader = make_loader(path.parent / "s", batch_size=2, rank=rank, world_size=2, even=True)
        counts.append(sum(1 for _ in loader))
        assert counts[-1] == len(loader)
    # rank 0 reads shards 0, 2, 4 (13 samples), rank 1 shards 1, 3 (10): both stop at 10
    assert counts[0] == counts[1] == 5


@pytest.mark.parametrize("drop_last", [False, True])
def test_len_matches_batches_and_drop_last(
    text_manifest: Callable[..., Path], drop_last: bool
) -> None:
    loader = make_loader(text_manifest(13), num_workers=2, batch_size=4, drop_last=drop_last)
    sizes = [len(b["ids"]) for b in loader]
    assert len(sizes) == len(loader)
    # worker slots hold 7 and 6 samples: 4+3 and 4+2, or only the full batches
    assert sorted(sizes) == ([4, 4] if drop_last else [2, 3, 4, 4])


def test_evaluation_order_is_the_manifest_order(text_manifest: Callable[..., Path]) -> None:
    loader = make_loader(text_manifest(7), shuffle=False, training=False, batch_size=3)
    ids = [i for b in loader for i in b["ids"]]
    assert ids == [f"s{i:03d}" for i in range(7)]
    again = [signature(b) for b in loader]
    assert again == [signature(b) for b in loader]  # no augmentation, no shuffle


def test_loading_leaves_the_global_rng_untouched(text_manifest: Callable[..., Path]) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(make_loader(text_manifest(9)))
    assert torch.equal(torch.rand(3), expected)


def _with_bad_rows(tmp_path: Path, n: int, bad: set[int]) -> Path:
    """A valid manifest whose rows in ``bad`` hold only a zero-width space (no visible text)."""
    rows = [
        {"id": f"s{i:03d}", "text": "\u200b" if i in bad else f"text {i}", "label": "a"}
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "bad.jsonl", rows)


class StrictChars(CharProcessor):
    """Rejects texts without visible characters (like a real tokenizer with nothing to encode)."""

    def load(self, raw: Any) -> torch.Tensor:
        if not any(c.isprintable() and not c.isspace() and c != "\u200b" for c in raw):
            raise MediaError(repr(raw), "no visible characters")
        return super().load(raw)


def _bad_loader(path: Path, policy: BadSamplePolicy, num_workers: int = 0) -> StreamingLoader:
    dataset = StreamingDataset(
        open_source(path),
        SampleDecoder({"text": StrictChars()}, LABEL),
        batch_size=4,
        policy=policy,
    )
    return StreamingLoader(dataset, num_workers)


def test_bad_sample_error_policy_names_sample_and_reason(tmp_path: Path) -> None:
    path = _with_bad_rows(tmp_path, 8, {5})
    with pytest.raises(
        MediaError, match=r"no visible characters \[sample 's005', .*bad\.jsonl:6\]"
    ):
        list(_bad_loader(path, BadSamplePolicy("error")))


def test_bad_sample_skip_policy_counts_across_workers(tmp_path: Path) -> None:
    path = _with_bad_rows(tmp_path, 40, {3, 20})
    loader = _bad_loader(path, BadSamplePolicy("skip", max_fraction=0.1), num_workers=2)
    ids = [i for b in loader for i in b["ids"]]
    assert len(ids) == 38 and "s003" not in ids and "s020" not in ids
    assert (loader.bad_samples, loader.seen_samples) == (2, 40)
    assert any("s020" in e for e in loader.bad_examples)


def test_too_many_bad_samples_raise(tmp_path: Path) -> None:
    path = _with_bad_rows(tmp_path, 10, {1, 2})
    loader = _bad_loader(path, BadSamplePolicy("skip", max_fraction=0.1))
    with pytest.raises(TooManyBadSamples, match=r"2 of 10 samples \(20.0%\)"):
        list(loader)
    warm = _bad_loader(path, BadSamplePolicy("skip", max_fraction=0.1, warmup=2))
    with pytest.raises(TooManyBadSamples, match="2 of 6 samples"):
        next(iter(warm))  # enforced at the first batch (6 seen) once past the warm-up


def test_unknown_class_is_a_bad_sample(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": "1", "text": "x", "label": "zebra"}])
    with pytest.raises(MediaError, match=r"field 'label' 'zebra' is not a card class"):
        list(make_loader(path))
