"""The experiments' run configs ship as package data and resolve by name."""

from __future__ import annotations

import pytest

from omnifuse.config import list_presets, load_config
from omnifuse_experiments.configs import config_path, list_configs


def test_every_run_config_ships_and_validates() -> None:
    names = list_configs()
    assert {"demo-pretrain", "demo-finetune", "study-shapes", "video-judge"} <= set(names)
    for name in names:
        assert load_config(config_path(name)).tasks, name


def test_run_configs_are_not_library_presets() -> None:
    assert set(list_configs()).isdisjoint(list_presets())
    assert list_presets() == [
        "base",
        "dual-encoder",
        "llava-stage1",
        "llava-stage2",
        "perceiver",
        "small",
        "tiny",
    ]


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(FileNotFoundError, match=r"'nope'; valid: demo-finetune, demo-pretrain"):
        config_path("nope")
