"""Fixtures of the training-engine tests: a tiny image+text shapesworld and run configs for it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from omnifuse.config import RunConfig, load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shapesworld with images only (text is the caption): 32 rows, made once per session."""
    from omnifuse import datasets

    out = tmp_path_factory.mktemp("shapesworld")
    datasets.make("shapesworld", out, size=32, progress=False, modalities=("image",), workers=1)
    return out


def base_run(data_dir: Path) -> dict[str, Any]:
    """A tiny image+text model with two classification tasks on one dataset."""
    return {
        "name": "tiny-train",
        "model": {
            "encoders": {
                "text": {
                    "type": "transformer",
                    "dim": 32,
                    "num_layers": 1,
                    "num_heads": 2,
                    "tokenizer": {"type": "byte", "max_length": 32},
                },
                "image": {
                    "type": "vit",
                    "dim": 32,
                    "num_layers": 2,
                    "num_heads": 2,
                    "patch_size": 8,
                    "processor": {"image_size": 32},
                },
            },
            "fusion": {"type": "concat", "dim": 32, "num_layers": 1, "num_heads": 2},
            "heads": {
                "shape": {"type": "classification", "num_classes": 6},
                "colour": {"type": "classification", "num_classes": 6, "source": "text"},
                "image_embed": {"type": "projection", "dim": 16, "source": "image"},
                "text_embed": {"type": "projection", "dim": 16, "source": "text"},
            },
        },
        "data": {
            "train": str(data_dir / "train.jsonl"),
            "val": str(data_dir / "val.jsonl"),
            "batch_size": 4,
            "fields": ["label", "topic"],
            "augment": False,
        },
        "tasks": {
            "shape": {"type": "classification", "head": "shape", "target": "label"},
            "colour": {"type": "classification", "head": "colour", "target": "topic"},
        },
        "training": {
            "max_steps": 4,
            "lr": 1e-3,
            "log_every_n_steps": 1,
            "progress_bar": False,
            "checkpoint": {"every_n_steps": 2},
        },
    }


@pytest.fixture
def run_config(shapes_dir: Path, tmp_path: Path) -> Callable[..., RunConfig]:
    """``run_config(*overrides, tasks=None)``: the base run with dotted overrides applied.

    ``tasks`` replaces the whole tasks section (a dict) when given.
    """

    def make(*overrides: str, tasks: dict[str, Any] | None = None) -> RunConfig:
        data = base_run(shapes_dir)
        if tasks is not None:
            data["tasks"] = tasks
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_config(path, list(overrides))

    return make


@pytest.fixture
def run_yaml(shapes_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """``run_yaml(**training)``: the base run as a YAML file, training section updated."""

    def make(**training: Any) -> Path:
        data = base_run(shapes_dir)
        data["training"].update(training)
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make
