"""The data section of a run config: which dataset, which fields, how it is batched and streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from omnifuse.config.base import MODALITIES, StrictModel

INPUT_FIELDS = MODALITIES
"""Manifest fields that are modality inputs; every other field (except ``id``) is a target."""


class DataConfig(StrictModel):
    """Where samples come from and how they are batched.

    ``train``/``val``/``test`` each name a JSONL manifest, a shard directory written by
    ``omnifuse data shard`` (or its ``index.json``). Inputs are loaded for every modality that has
    an encoder in ``model.encoders``; ``fields`` picks the target fields (default: all non-input
    fields of the dataset card), so adding a dataset needs no Python.
    """

    train: Path | None = Field(default=None, description="Training manifest (JSONL) or shard dir.")
    val: Path | None = Field(default=None, description="Validation manifest or shard dir.")
    test: Path | None = Field(default=None, description="Test manifest or shard dir.")
    card: Path | None = Field(
        default=None,
        description="Dataset card (card.yaml); default: the one next to the train manifest or "
        "inside the shard dir, else one inferred from the manifests.",
    )
    fields: list[str] | None = Field(
        default=None,
        description="Target fields to load (e.g. [label, captions]); default: every non-input "
        "field of the card.",
    )
    text_field: str = Field(
        default="text",
        description="Manifest field fed to the text encoder (e.g. `question` for VQA, so the "
        "model reads the question while `answer` is the target).",
    )
    alternatives: dict[str, str] = Field(
        default_factory=dict,
        description="Training split: field -> a list field holding alternatives to it (e.g. "
        "`{caption: captions}`); every visit draws the field's value from that list, so a "
        "captioner sees every reference caption over the epochs. Evaluation reads the field as "
        "stored. Follows `augment` (seeded per sample, so a resumed run draws the same).",
    )
    allow_outside_root: bool = Field(
        default=False,
        description="Accept manifest media paths that resolve outside the manifest's directory "
        "(`..`, symlinks leaving it), e.g. media imported without --copy. Off: such rows are "
        "refused, so a dataset cannot make omnifuse read arbitrary files.",
    )
    batch_size: int = Field(default=16, gt=0)
    num_workers: int = Field(
        default=0,
        ge=0,
        description="DataLoader worker processes; they persist across epochs (and keep their "
        "media cache), each reading a fixed share of a manifest's samples.",
    )
    cache_mb: int = Field(
        default=0,
        ge=0,
        description="Keep processed media (not text) in memory up to this many MiB per process "
        "(each of num_workers workers: its 1/num_workers share), so later epochs skip decoding; "
        "only loads without augmentation are cached. ~48 KiB per 64 px image, ~150 KiB per 6-s "
        "log-mel clip. 0 = off.",
    )
    pin_memory: bool = Field(default=False, description="Pin batches in page-locked memory (GPU).")
    shuffle: bool = Field(default=True, description="Shuffle the training split every epoch.")
    shuffle_buffer: int = Field(
        default=1000, ge=0, description="Samples held in the shard shuffle buffer (0 = off)."
    )
    seed: int = Field(default=0, description="Seeds shuffling and augmentation per epoch/worker.")
    drop_last: bool = Field(default=False, description="Drop each worker's last partial batch.")
    bucket_by_length: int = Field(
        default=0,
        ge=0,
        description="Training split: batch samples of similar length (audio frames, text "
        "tokens, video frames) to cut padding. Each worker sorts windows of this many batches "
        "by length and shuffles the batch order; every sample still comes once per epoch. "
        "0 = off (batches in shuffled stream order). ~50 is a good start.",
    )
    augment: bool = Field(
        default=True,
        description="Run the processors in training mode (their augmentation) on the train split.",
    )
    on_bad_sample: Literal["error", "skip"] = Field(
        default="error",
        description="A sample whose media cannot be loaded: raise (naming path and reason) or "
        "skip it, count it and log it.",
    )
    max_bad_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="With on_bad_sample=skip: raise once more than this fraction of the samples "
        "seen so far were bad.",
    )

    @model_validator(mode="after")
    def _fields_are_targets(self) -> DataConfig:
        for name in self.fields or []:
            if name == "id" or name in INPUT_FIELDS:
                raise ValueError(
                    f"fields: {name!r} is not a target field; inputs ({', '.join(INPUT_FIELDS)}) "
                    "are loaded for every configured encoder and 'id' is always returned"
                )
        for name, pool in self.alternatives.items():
            if name == pool or name == "id" or (name in INPUT_FIELDS and name != "text"):
                raise ValueError(
                    f"alternatives: {name!r}: {pool!r} is not valid; map a text or target field "
                    "to another field that holds a list of its alternatives (e.g. caption: "
                    "captions)"
                )
        return self
