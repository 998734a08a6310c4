"""The demo's speech stage (``omnifuse_experiments.demo_speech``): its manifests and config."""

from __future__ import annotations

import json
from pathlib import Path

from omnifuse.config import load_config
from omnifuse_experiments.configs import config_path
from omnifuse_experiments.demo_speech import FULL, QUICK, speech_manifest, stage_overrides


def test_manifest_keeps_rows_with_a_clip_and_absolute_paths(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "audio": "audio/a.wav", "transcript": "a red circle"},
        {"id": "b", "text": "no audio here"},
        {"id": "c", "audio": "audio/c.wav", "transcript": ""},
    ]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = speech_manifest(tmp_path, "val", tmp_path / "out")
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == [{"id": "a", "audio": "../audio/a.wav", "transcript": "a red circle"}]
    assert (path.parent / kept[0]["audio"]).resolve() == (tmp_path / "audio/a.wav").resolve()


def test_stage_config_fine_tunes_whisper_at_the_clips_length(tmp_path: Path) -> None:
    manifests = {"train": tmp_path / "train.jsonl", "val": tmp_path / "val.jsonl"}
    overrides = stage_overrides(tmp_path / "whisper", manifests, tmp_path, FULL)
    config = load_config(config_path("demo-speech"), overrides)
    audio = config.model.encoders.audio
    assert audio is not None and audio.type == "hf" and audio.window == "input"
    assert config.data.bucket_by_length > 0 and config.data.allow_outside_root
    assert config.training.max_steps == FULL.steps > 0
    assert config.data.card == tmp_path / "card.yaml"
    # Quick mode trains nothing (the stage scores zero-shot Whisper); the config stays valid.
    assert QUICK.steps == 0
    quick = load_config(
        config_path("demo-speech"), stage_overrides(tmp_path, manifests, tmp_path, QUICK)
    )
    assert quick.training.max_steps == 1
