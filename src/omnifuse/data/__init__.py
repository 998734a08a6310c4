"""Datasets: JSONL manifests, dataset cards, importers, shards, collate and the DataModule.

Names are imported lazily, so ``import omnifuse.data`` (or a submodule such as
``omnifuse.data.card``) does not pull in Lightning or the model registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Batch": "omnifuse.types",
    "collate_samples": "omnifuse.data.collate",
    "DatasetCard": "omnifuse.data.card",
    "read_card": "omnifuse.data.card",
    "write_card": "omnifuse.data.card",
    "ManifestError": "omnifuse.data.manifest",
    "Record": "omnifuse.data.manifest",
    "read_manifest": "omnifuse.data.manifest",
    "write_manifest": "omnifuse.data.manifest",
    "CheckReport": "omnifuse.data.check",
    "check_path": "omnifuse.data.check",
    "ImportOptions": "omnifuse.data.importers",
    "import_dataset": "omnifuse.data.importers",
    "read_index": "omnifuse.data.shards",
    "write_shards": "omnifuse.data.shards",
    "BadSamplePolicy": "omnifuse.data.decode",
    "TooManyBadSamples": "omnifuse.data.decode",
    "StreamingDataset": "omnifuse.data.streaming",
    "StreamingLoader": "omnifuse.data.streaming",
    "OmnifuseDataModule": "omnifuse.data.datamodule",
    "build_loader": "omnifuse.data.datamodule",
    "build_processors": "omnifuse.registry",
}

__all__ = [
    "BadSamplePolicy",
    "Batch",
    "CheckReport",
    "DatasetCard",
    "ImportOptions",
    "ManifestError",
    "OmnifuseDataModule",
    "Record",
    "StreamingDataset",
    "StreamingLoader",
    "TooManyBadSamples",
    "build_loader",
    "build_processors",
    "check_path",
    "collate_samples",
    "import_dataset",
    "read_card",
    "read_index",
    "read_manifest",
    "write_card",
    "write_manifest",
    "write_shards",
]

if TYPE_CHECKING:
    from omnifuse.data.card import DatasetCard, read_card, write_card
    from omnifuse.data.check import CheckReport, check_path
    from omnifuse.data.collate import collate_samples
    from omnifuse.data.datamodule import OmnifuseDataModule, build_loader
    from omnifuse.data.decode import BadSamplePolicy, TooManyBadSamples
    from omnifuse.data.importers import ImportOptions, import_dataset
    from omnifuse.data.manifest import ManifestError, Record, read_manifest, write_manifest
    from omnifuse.data.shards import read_index, write_shards
    from omnifuse.data.streaming import StreamingDataset, StreamingLoader
    from omnifuse.registry import build_processors


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'omnifuse.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
