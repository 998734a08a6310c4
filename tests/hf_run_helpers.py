"""Tiny runs built from HF directories that the test then deletes: a CLIP vision tower + a
Qwen2-style ``causal_lm`` trained 3 steps through ``omnifuse train``, and a Whisper encoder +
``whisper_decoder`` fine-tuned a few steps in process and saved. Used by the self-contained run
tests (tests/models) and the HF export tests (tests/export)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from typer.testing import CliRunner

from lm_helpers import lm_run_config, save_tiny_lm, write_conversations
from omnifuse.cli.main import app
from omnifuse.config.loader import validate_config
from omnifuse.models import build_model
from omnifuse.models.persistence import save
from omnifuse.tasks import build_tasks

PROMPT = "describe the input"


def _root_conftest() -> Any:
    """tests/conftest.py (its tiny-tower writers); by path, since tests/export has its own
    ``conftest`` module."""
    name = "omnifuse_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@dataclass
class HFRun:
    """A saved run whose HF source directories are gone.

    Attributes:
        run_dir: the run (or model) directory.
        image: a PNG the run predicts on.
        before: what the run predicted while its sources still existed.
        original: per component, the *untrained* source weights (to tell fine-tuned ones apart).
    """

    run_dir: Path
    image: Path
    before: Any
    original: dict[str, dict[str, torch.Tensor]]


def train_lm_run(root: Path) -> HFRun:
    """CLIP vision (hf) + concat fusion + causal_lm (Qwen2-style), 3 steps; sources deleted."""
    from omnifuse.inference import Pipeline

    runner = CliRunner()
    source = root / "source"
    clip = _root_conftest().save_tiny_hf_tower("clip", source / "clip")
    lm = save_tiny_lm("qwen2", source / "lm")
    convs = write_conversations(root / "convs")
    args = ["data", "import", "conversations", str(convs), "--out", str(root / "data")]
    imported = runner.invoke(app, [*args, "--val-fraction", "0", "--copy"])
    assert imported.exit_code == 0, imported.output
    config = lm_run_config(lm, kind="chat")
    config["model"]["encoders"]["image"] = {"type": "hf", "path": str(source / "clip")}
    config["data"] = {"train": str(root / "data" / "train.jsonl"), "batch_size": 2}
    config["data"]["augment"] = False
    config["training"] = {"max_steps": 3, "lr": 1e-2, "progress_bar": False}
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = root / "run"
    trained = runner.invoke(app, ["train", str(path), "--run-dir", str(run_dir)])
    assert trained.exit_code == 0, trained.output
    image = convs.parent / "red.png"
    pipe = Pipeline.load(run_dir, device="cpu")
    before = pipe.predict("chat", image=[str(image)], text=[PROMPT])
    original = {"encoders.image": clip.state_dict()}
    shutil.rmtree(source)
    return HFRun(run_dir, image, before, {k: dict(v) for k, v in original.items()})


def whisper_model(root: Path) -> HFRun:
    """A Whisper audio encoder + whisper_decoder (one directory), 3 Adam steps, saved with
    ``omnifuse.save``; the source directory is deleted."""
    source = root / "whisper"
    reference = _root_conftest().save_tiny_whisper_asr(source)
    run = validate_config(
        {
            "model": {
                "encoders": {"audio": {"type": "hf", "path": str(source)}},
                "heads": {"asr": {"type": "whisper_decoder", "path": str(source), "max_length": 8}},
            },
            "tasks": {
                "asr": {"type": "captioning", "head": "asr", "target": "transcript"}
                | {"inputs": ["audio"]}
            },
        }
    )
    model, processors = build_model(run.model)
    task = build_tasks(run, model, processors)["asr"]
    waves = [(np.sin(np.arange(8000) * f).astype(np.float32), 16_000) for f in (0.05, 0.1)]
    batch = {
        "inputs": {"audio": processors["audio"](waves)},
        "targets": {"transcript": ["hi there", "go left"]},
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        task(model, batch)["loss"].backward()
        optimizer.step()
    model_dir = save(root / "model", model, processors, run)
    wav = root / "u.wav"
    import soundfile

    soundfile.write(wav, waves[0][0], 16_000)
    from omnifuse.inference import Pipeline

    before = Pipeline.load(model_dir, device="cpu").predict("asr", audio=[str(wav)])
    original = {"whisper": dict(reference.state_dict())}
    for file in (root / "whisper-ct2", source):
        shutil.rmtree(file)
    return HFRun(model_dir, wav, before, original)
