"""A saved run whose model uses hf towers, a causal_lm or a whisper_decoder loads and predicts
after the HF directories it was built from are deleted: ``omnifuse.save`` copies their config,
tokenizer and processor files into the model directory (weights are in model.safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hf_run_helpers import PROMPT, HFRun, train_lm_run, whisper_model
from omnifuse.inference import Pipeline


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> HFRun:
    return train_lm_run(tmp_path_factory.mktemp("self-contained-lm"))


@pytest.fixture(scope="module")
def whisper_run(tmp_path_factory: pytest.TempPathFactory) -> HFRun:
    return whisper_model(tmp_path_factory.mktemp("self-contained-whisper"))


def saved_paths(model_dir: Path) -> list[str]:
    """Every ``path`` the saved config.yaml names (encoders and heads)."""
    model = yaml.safe_load((model_dir / "config.yaml").read_text())["model"]
    parts = [*model["encoders"].values(), *model["heads"].values()]
    return [part["path"] for part in parts if isinstance(part, dict) and "path" in part]


@pytest.mark.slow
def test_trained_lm_run_predicts_without_its_sources(lm_run: HFRun) -> None:
    model_dir = lm_run.run_dir / "model"
    assert sorted(saved_paths(model_dir)) == ["heads/lm", "image"]  # relative: inside the dir
    assert (model_dir / "heads" / "lm" / "tokenizer.json").is_file()
    assert not (model_dir / "heads" / "lm" / "model.safetensors").exists()  # weights: once
    after = Pipeline.load(lm_run.run_dir, device="cpu").predict(
        "chat", image=[str(lm_run.image)], text=[PROMPT]
    )
    assert after == lm_run.before


@pytest.mark.slow
def test_whisper_model_predicts_without_its_source(whisper_run: HFRun) -> None:
    assert sorted(saved_paths(whisper_run.run_dir)) == ["audio", "heads/asr"]
    head = whisper_run.run_dir / "heads" / "asr"
    assert {"generation_config.json", "tokenizer.json", "config.json"} <= {
        f.name for f in head.iterdir()
    }
    after = Pipeline.load(whisper_run.run_dir, device="cpu").predict(
        "asr", audio=[str(whisper_run.image)]
    )
    assert after == whisper_run.before
