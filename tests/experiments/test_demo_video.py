"""The demo's video stage (``omnifuse_experiments.demo_video``): its two runs' configs."""

from __future__ import annotations

from pathlib import Path

import yaml

from omnifuse.config import load_config
from omnifuse.models import build_model
from omnifuse_experiments.configs import config_path
from omnifuse_experiments.demo import shrink_overrides
from omnifuse_experiments.demo_video import (
    CONFIG,
    FULL,
    QUICK,
    TOKENIZER_PREFIX,
    eval_command,
    only_task,
    prior_overrides,
    tokenizer_overrides,
)


def test_only_task_keeps_the_config_entry_of_one_task() -> None:
    shipped = yaml.safe_load(config_path(CONFIG).read_text())["tasks"]
    assert set(shipped) == {"video_tokenizer", "video_generation"}
    for name, entry in shipped.items():
        config = load_config(config_path(CONFIG), [only_task(name)])
        assert list(config.tasks) == [name]
        kept = config.tasks[name].model_dump(include=set(entry))
        assert kept == entry


def test_tokenizer_run_trains_reconstruction_only() -> None:
    config = load_config(config_path(CONFIG), tokenizer_overrides(FULL))
    assert [task.type for task in config.tasks.values()] == ["video_tokenizer"]
    assert config.training.max_steps == FULL.tokenizer_steps
    assert config.training.init_from is None and not config.training.freeze


def test_prior_run_starts_from_the_tokenizer_and_freezes_exactly_its_weights(
    tmp_path: Path,
) -> None:
    config = load_config(config_path(CONFIG), prior_overrides(FULL, tmp_path / "tok"))
    (task,) = config.tasks.values()
    assert task.type == "video_generation" and task.condition_dropout > 0  # guidance needs it
    assert config.training.max_steps == FULL.prior_steps
    assert config.training.init_from == tmp_path / "tok"
    model, _ = build_model(config.model)
    names = [name for name, _ in model.named_parameters()]
    frozen = [name for name in names if name.startswith(f"{TOKENIZER_PREFIX}.")]
    # The prefix names real parameters (a typo would freeze nothing), and leaves the prior and
    # the text encoder trainable.
    assert frozen and len(frozen) < len(names)
    assert any(name.startswith("heads.generator.prior") for name in names)
    assert any(name.startswith("encoders.text") for name in names)


def test_quick_plan_is_small_and_shrinks_to_a_valid_tiny_model(tmp_path: Path) -> None:
    assert QUICK.tokenizer_steps < FULL.tokenizer_steps and QUICK.prior_steps < FULL.prior_steps
    overrides = [*prior_overrides(QUICK, tmp_path), *shrink_overrides(config_path(CONFIG))]
    config = load_config(config_path(CONFIG), overrides)
    assert config.model.encoders.image is None  # shrinking adds no encoder the config lacks
    head = config.model.heads["generator"]
    assert head.type == "video_generator" and head.prior.dim == 32


def test_eval_command_names_the_judge_and_the_sample_limit(tmp_path: Path) -> None:
    full = eval_command(tmp_path / "prior", tmp_path / "judge", tmp_path / "out", FULL)
    assert f"--judge {tmp_path / 'judge'}" in full and "--max-samples" not in full
    quick = eval_command(tmp_path / "prior", tmp_path / "judge", tmp_path / "out", QUICK)
    assert quick.endswith(f"--max-samples {QUICK.eval_samples}")
