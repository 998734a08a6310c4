"""Lightning DataModule and plain loader factory over manifests or shards.

The processors come from the model config's encoders (``registry.encoder_spec(modality,
type).build_processor(config)``), or are passed in (e.g. those of a loaded model), so data and
model always agree on tokenizer, image size, sample rate ...
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L

from omnifuse import distributed
from omnifuse.config.data import DataConfig
from omnifuse.config.model import ModelConfig
from omnifuse.data.card import DatasetCard, card_for_manifests, read_card
from omnifuse.data.collate import TargetField, target_fields
from omnifuse.data.decode import MEDIA_CACHE, BadSamplePolicy, SampleDecoder
from omnifuse.data.sources import open_source, source_card
from omnifuse.data.streaming import StreamingDataset, StreamingLoader
from omnifuse.modalities.base import Processor
from omnifuse.registry import build_processors


def resolve_card(data: DataConfig) -> DatasetCard:
    """The dataset card: ``data.card``, else the one beside ``train`` (or ``val``, ``test``),
    else one inferred from the manifests.

    Raises:
        ValueError: no ``train``/``val`` configured.
        FileNotFoundError: a configured path that does not exist.
    """
    if data.card is not None:
        return read_card(data.card)
    paths = [p for p in (data.train, data.val, data.test) if p is not None]
    if not paths:
        raise ValueError("data.train, data.val and data.test are unset; set at least one of them")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"dataset not found: {path}")
        found = source_card(path)
        if found is not None:
            return read_card(found)
    manifests = {p.stem: p for p in paths if p.suffix == ".jsonl"}
    return card_for_manifests(manifests, name=paths[0].parent.name or "dataset")


def build_loader(
    path: Path,
    processors: Mapping[str, Processor[Any]],
    fields: Mapping[str, TargetField],
    data: DataConfig,
    train: bool,
    card: DatasetCard | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> StreamingLoader:
    """A :class:`StreamingLoader` over a manifest or shard dir with ``data``'s settings.

    ``train`` turns on shuffling, augmentation (if ``data.augment``), ``drop_last``, length
    bucketing (``data.bucket_by_length``) and, under DDP, equal batch counts per rank.
    """
    world = distributed.world_size() if world_size is None else world_size
    if data.cache_mb > 0:
        MEDIA_CACHE.reserve(data.cache_mb * 2**20)
    dataset = StreamingDataset(
        open_source(path, card, data.allow_outside_root),
        SampleDecoder(
            processors,
            fields,
            training=train and data.augment,
            text_field=data.text_field,
            cache=data.cache_mb > 0,
            alternatives=data.alternatives,
        ),
        data.batch_size,
        shuffle=train and data.shuffle,
        shuffle_buffer=data.shuffle_buffer,
        seed=data.seed,
        drop_last=train and data.drop_last,
        policy=BadSamplePolicy(data.on_bad_sample, data.max_bad_fraction),
        even=train and world > 1,
        bucket=data.bucket_by_length if train else 0,
    )
    return StreamingLoader(dataset, data.num_workers, rank, world_size, data.pin_memory)


class OmnifuseDataModule(L.LightningDataModule):
    """Train/val/test loaders for a :class:`DataConfig`.

    The train loader is stateful (``state_dict``/``load_state_dict``); Lightning stores its state
    in checkpoints and a resumed fit continues mid-epoch with exactly the batches it would have
    seen.

    Args:
        data: The data section of the run config.
        model: The model config whose encoders define the processors (when ``processors`` is
            not given).
        processors: Modality -> processor, overriding ``model``.
        rank: This process's rank (default: from ``torch.distributed``).
        world_size: Number of ranks (default likewise).

    Raises:
        ValueError: neither ``model`` nor ``processors`` given.
    """

    def __init__(
        self,
        data: DataConfig,
        model: ModelConfig | None = None,
        processors: Mapping[str, Processor[Any]] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if processors is not None:
            self.processors = dict(processors)
        elif model is not None:
            self.processors = build_processors(model)
        else:
            raise ValueError("OmnifuseDataModule needs a model config or processors")
        self.data = data
        self.rank, self.world_size = rank, world_size
        self.card: DatasetCard | None = None
        self.fields: dict[str, TargetField] = {}
        self._train: StreamingLoader | None = None
        self._val: StreamingLoader | None = None
        self._test: StreamingLoader | None = None

    def setup(self, stage: str | None = None) -> None:
        """Read the card and pick the target fields (idempotent)."""
        if self.card is None:
            self.card = resolve_card(self.data)
            self.fields = target_fields(self.card, self.data.fields)

    def _loader(self, path: Path | None, name: str, train: bool) -> StreamingLoader:
        if path is None:
            raise ValueError(f"data.{name} is not set")
        self.setup()
        return build_loader(
            path,
            self.processors,
            self.fields,
            self.data,
            train,
            self.card,
            self.rank,
            self.world_size,
        )

    def train_dataloader(self) -> StreamingLoader:
        """The (reused) training loader: shuffled, augmented, resumable."""
        if self._train is None:
            self._train = self._loader(self.data.train, "train", train=True)
        return self._train

    def val_dataloader(self) -> StreamingLoader:
        """The validation loader: fixed order, no augmentation, every sample."""
        if self._val is None:
            self._val = self._loader(self.data.val, "val", train=False)
        return self._val

    def test_dataloader(self) -> StreamingLoader:
        """The test loader: like the validation loader, over ``data.test``."""
        if self._test is None:
            self._test = self._loader(self.data.test, "test", train=False)
        return self._test

    @property
    def bad_samples(self) -> int:
        """Samples skipped as bad in the current epoch of each loader, summed."""
        loaders = (self._train, self._val, self._test)
        return sum(loader.bad_samples for loader in loaders if loader is not None)
