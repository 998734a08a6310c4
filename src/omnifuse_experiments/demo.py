"""``omnifuse demo``: the main job, end to end on the built-in ShapesWorld.

Stages: generate the data (reused when its card says it was made with the same size and seed)
and check every file; pretrain one shared four-modality model self-supervised
(``omnifuse_experiments/configs/demo-pretrain.yaml``); fine-tune it on the task families
(``omnifuse_experiments/configs/demo-finetune.yaml``, ``training.init_from`` the pretrained
model); train the video judge, the text-to-video model (:mod:`demo_video`) and the speech
model (:mod:`demo_speech`); evaluate on the validation split; write ``report.md`` with the
metric table against the targets, the wall time of every stage, the load average, the plots and
the commands that reproduce each stage.

Example:
    >>> from omnifuse_experiments.demo import run_demo
    >>> summary = run_demo(Path("runs/demo"), quick=True)
    >>> summary["rows"][0]
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from omnifuse.config import RunConfig, load_config
from omnifuse.data.check import check_path
from omnifuse.data.corpus import write_corpus
from omnifuse.datasets import make, shapesworld
from omnifuse_experiments.configs import config_path
from omnifuse_experiments.demo_report import Row, metric_rows, write_report
from omnifuse_experiments.demo_speech import SpeechResult, run_speech
from omnifuse_experiments.demo_video import CONFIG as VIDEO
from omnifuse_experiments.demo_video import FULL as VIDEO_FULL
from omnifuse_experiments.demo_video import QUICK as VIDEO_QUICK
from omnifuse_experiments.demo_video import (
    eval_command,
    evaluate_generation,
    prior_overrides,
    tokenizer_overrides,
)

CORPUS_FIELDS = ("captions", "question", "transcript", "video_caption")
"""Manifest fields whose texts train the demo's word-piece tokenizer."""

PRETRAIN = "demo-pretrain"
FINETUNE = "demo-finetune"
JUDGE = "video-judge"
"""Names of the shipped run configs of the three training stages (:func:`config_path`)."""
BEAMS = 4
"""Beam size of the evaluation's caption decoding."""

TOKENIZER = "model/text/tokenizer.json"
"""Where a saved model keeps its trained text tokenizer (relative to the run directory)."""

console = Console()


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run.

    Attributes:
        size: ShapesWorld samples (80/10/10 train/val/test; retrieval needs 500 in val).
        pretrain_steps, finetune_steps: optimiser steps of the two training stages.
        curriculum_steps: the first fine-tuning steps, which train only visual recognition
            (``training.multitask.curriculum`` of the ``demo-finetune`` run config).
        judge_steps: optimiser steps of the video judge (the ``video-judge`` run config).
        batch_size: training batch size.
        shrink: replace the run configs' model by a tiny one (quick mode).
        eval_max_samples: evaluate at most this many samples per task (None: the split).
    """

    size: int
    pretrain_steps: int
    finetune_steps: int
    curriculum_steps: int
    judge_steps: int
    batch_size: int
    shrink: bool = False
    eval_max_samples: int | None = None


FULL = DemoPlan(
    size=5000,
    pretrain_steps=400,
    finetune_steps=5600,
    curriculum_steps=1600,
    judge_steps=500,
    batch_size=16,
)
QUICK = DemoPlan(
    size=60,
    pretrain_steps=14,
    finetune_steps=20,
    curriculum_steps=4,
    judge_steps=6,
    batch_size=8,
    shrink=True,
)


def cpu_seconds() -> float:
    """User + system CPU time so far of this process and of every child process it has waited
    for (data-generation workers, DataLoader workers, their speech-synthesis servers).

    What the demo costs whatever else runs on the machine: ``time.process_time`` alone missed
    the data stage's worker processes (1 CPU-second reported for 53 s of two busy cores).
    """
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Stage:
    """A finished stage: its name, wall time, CPU time of this process and its children (user +
    system: see :func:`cpu_seconds`) and the CLI command that reproduces it."""

    name: str
    seconds: float
    command: str = ""
    note: str = ""
    cpu_seconds: float = 0.0


@dataclass
class DemoRun:
    """What the stages produce, gathered for the report."""

    out_dir: Path
    plan: DemoPlan
    stages: list[Stage] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        """Where ShapesWorld lives."""
        return self.out_dir / "data" / "shapesworld"

    @contextmanager
    def stage(self, name: str, command: str = "") -> Iterator[Stage]:
        """Time a stage (printed on the console and kept for the report)."""
        console.rule(f"[bold]{name}")
        record = Stage(name, 0.0, command)
        start, cpu = time.perf_counter(), cpu_seconds()
        yield record
        record.seconds = time.perf_counter() - start
        record.cpu_seconds = cpu_seconds() - cpu
        self.stages.append(record)
        console.print(f"[green]{name}[/] done in {record.seconds:.1f} s {record.note}")


def run_demo(out_dir: Path, quick: bool = False, threads: int = 1) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return its summary (the report is ``report.md``).

    Args:
        out_dir: run directory (created): ``data/``, ``pretrain/``, ``finetune/``, ``eval/``,
            ``report.md``.
        quick: 60 samples, a tiny model and a few steps (for CI; targets are not expected to be
            met) instead of 5,000 samples and the ``small``-sized model.
        threads: torch intra-op threads. One by default: the demo's matrices are small (width
            128, batch 16), so a second thread mostly waits on the first, and on a shared
            machine it waits for a core too (fine-tuning steps with 2 threads at load 13 took
            several times the wall time of 1 thread). The budget is CPU time.
    """
    run = DemoRun(out_dir, QUICK if quick else FULL)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    prepare_data(run)
    pretrain(run)
    finetune(run)
    train_judge(run)
    video = video_stage(run)
    speech = speech_stage(run)
    report = evaluate_run(run)
    # The report's speech and video-generation rows are their own stages'.
    report["tasks"]["asr"] = speech.task
    report["tasks"]["video_generation"] = video
    run.rows = metric_rows(report["tasks"])
    total = time.perf_counter() - start
    path = write_report(out_dir / "report.md", run.rows, run.stages, run.plots, total, quick)
    console.print(f"report: {path}")
    return {
        "report": str(path),
        "model_dir": str(out_dir / "finetune" / "model"),
        "seconds": round(total, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": [row.to_json() for row in run.rows],
    }


# --------------------------------------------------------------------------- data


def prepare_data(run: DemoRun) -> None:
    """Generate ShapesWorld (unless the same size/seed is already there), check it, write the
    tokenizer corpus."""
    size, data_dir = run.plan.size, run.data_dir
    make_data = f"omnifuse data make shapesworld --out {data_dir} --size {size} --seed 0"
    command = f"{make_data}\n{corpus_command(data_dir)}"
    with run.stage("data", command) as stage:
        if has_data(data_dir, size, seed=0):
            stage.note = "(reused)"
        else:
            make("shapesworld", data_dir, size=size, seed=0, progress=True)
        write_demo_corpus(data_dir)
    with run.stage("check", f"omnifuse data check {data_dir}") as stage:
        report = check_path(data_dir)
        if not report.ok:
            raise RuntimeError(f"generated data failed its own check: {report.counts()}")
        stage.note = f"({report.rows} rows, {report.media_checked} media files opened)"


def has_data(data_dir: Path, size: int, seed: int) -> bool:
    """Whether ``data_dir`` holds ShapesWorld generated with ``size`` and ``seed`` by this
    version of the generator (data of an older version is regenerated)."""
    card = data_dir / "card.yaml"
    if not card.is_file():
        return False
    generator = (yaml.safe_load(card.read_text()) or {}).get("generator") or {}
    wanted = {"size": size, "seed": seed, "version": shapesworld.VERSION}
    return all(generator.get(key) == value for key, value in wanted.items())


def corpus_command(data_dir: Path) -> str:
    """The CLI command writing ``corpus.txt`` (see :func:`write_demo_corpus`)."""
    fields = " ".join(f"--field {name}" for name in CORPUS_FIELDS)
    return (
        f"omnifuse data corpus {data_dir / 'train.jsonl'} {fields} --out {data_dir / 'corpus.txt'}"
    )


def write_demo_corpus(data_dir: Path) -> Path:
    """``corpus.txt``: one text per line from the train split (captions, questions,
    transcripts, video captions); the word-piece tokenizer of the demo trains on it."""
    path = data_dir / "corpus.txt"
    write_corpus(data_dir / "train.jsonl", CORPUS_FIELDS, path)
    return path


# --------------------------------------------------------------------------- training


def pretrain(run: DemoRun) -> None:
    """Stage 1: self-supervised pretraining."""
    overrides = [
        *data_overrides(run),
        f"model.encoders.text.tokenizer.corpus=[{run.data_dir / 'corpus.txt'}]",
        f"training.max_steps={run.plan.pretrain_steps}",
    ]
    train_stage(run, "pretrain", PRETRAIN, overrides)


def finetune(run: DemoRun) -> None:
    """Stage 2: multi-task fine-tuning from the pretrained model."""
    source = run.out_dir / "pretrain"
    overrides = [
        *data_overrides(run),
        f"model.encoders.text.tokenizer.path={source / TOKENIZER}",
        f"training.init_from={source}",
        f"training.max_steps={run.plan.finetune_steps}",
        f"training.multitask.curriculum.steps={run.plan.curriculum_steps}",
    ]
    train_stage(run, "finetune", FINETUNE, overrides)


def train_judge(run: DemoRun) -> None:
    """The separately trained video classifier that judges generated clips (real clips only)."""
    overrides = [*data_overrides(run), f"training.max_steps={run.plan.judge_steps}"]
    train_stage(run, "judge", JUDGE, overrides, shrink=False)


def video_stage(run: DemoRun) -> dict[str, Any]:
    """Text-to-video as its own model (:mod:`demo_video`): the tokenizer run, the prior run over
    its frozen codes, then its clips judged; returns the ``video_generation`` evaluation."""
    plan = VIDEO_QUICK if run.plan.shrink else VIDEO_FULL
    tokenizer, prior = run.out_dir / "video-tokenizer", run.out_dir / "video-prior"
    train_stage(run, tokenizer.name, VIDEO, [*data_overrides(run), *tokenizer_overrides(plan)])
    train_stage(run, prior.name, VIDEO, [*data_overrides(run), *prior_overrides(plan, tokenizer)])
    judge, out = run.out_dir / "judge", run.out_dir / "video-eval"
    with run.stage(out.name, eval_command(prior, judge, out, plan)):
        task, plots = evaluate_generation(prior, judge, out, plan)
    run.plots += plots
    return task


def speech_stage(run: DemoRun) -> SpeechResult:
    """Speech recognition by the pretrained Whisper tiny.en (:mod:`demo_speech`)."""
    with run.stage("speech") as stage:
        result = run_speech(run.out_dir / "speech", run.data_dir, quick=run.plan.shrink)
        stage.command, stage.note = result.command, result.note
    return result


def data_overrides(run: DemoRun) -> list[str]:
    """Point a run config at the demo's data and batch size."""
    return [
        f"data.train={run.data_dir / 'train.jsonl'}",
        f"data.val={run.data_dir / 'val.jsonl'}",
        f"data.batch_size={run.plan.batch_size}",
    ]


def train_stage(
    run: DemoRun, name: str, preset: str, overrides: list[str], shrink: bool = True
) -> None:
    """Train ``preset`` (a shipped run config) with ``overrides`` into ``out_dir/name``
    (with the quick plan's tiny model unless ``shrink`` is False)."""
    from omnifuse.training import train

    run_dir = run.out_dir / name
    config, command = stage_config(run, preset, overrides, shrink)
    command += f" --run-dir {run_dir}"
    with run.stage(name, command) as stage:
        shutil.rmtree(run_dir, ignore_errors=True)  # the demo owns it: a re-run starts afresh
        result = train(config, run_dir)
        stage.note = f"({result.steps} steps, {result.samples_per_s:.1f} samples/s)"


def stage_config(
    run: DemoRun, preset: str, overrides: list[str], shrink: bool = True
) -> tuple[RunConfig, str]:
    """The run config of a training stage and the ``omnifuse train`` command that gives it:
    ``preset`` with ``overrides``, the quick plan's tiny model (unless ``shrink`` is False) and
    fp32 where the CPU lacks native bf16 (:func:`native_bf16`)."""
    path = config_path(preset)
    if run.plan.shrink and shrink:
        overrides = [*overrides, *shrink_overrides(path)]
    if not native_bf16():
        overrides = [*overrides, "training.precision=32-true"]
    command = " ".join(["omnifuse train", str(path), *map(_quote, overrides)])
    return load_config(path, overrides), command


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX, as oneDNN reports it).

    The shipped configs train under ``bf16-mixed`` (1.6x the fp32 rate of a fine-tuning step
    on such a CPU). Without native bf16, oneDNN emulates it at a cost not measured here, so
    the demo trains in fp32 there, as its results before 2026-12-04 were measured.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _quote(override: str) -> str:
    return f"'{override}'" if any(c in override for c in " {}[]") else override


def shrink_overrides(config_path: Path) -> list[str]:
    """Overrides turning a demo run config's model into a tiny one (quick mode, CI)."""
    raw = yaml.safe_load(config_path.read_text())["model"]
    tiny = "dim=32", "num_layers=1", "num_heads=2"
    out = [f"model.encoders.{name}.{t}" for name in raw["encoders"] for t in tiny]
    out += [f"model.fusion.{t}" for t in tiny]
    if "image" in raw["encoders"]:
        out += ["model.encoders.image.processor.image_size=32"]
    for name, head in raw["heads"].items():
        prefix = f"model.heads.{name}"
        if head["type"] == "projection":
            out.append(f"{prefix}.dim=32")
        elif head["type"] == "caption_decoder":
            out += [f"{prefix}.{t}" for t in tiny]
        elif head["type"] == "video_generator":
            out += [f"{prefix}.prior.{t}" for t in tiny]
            out += [f"{prefix}.tokenizer.stage_dims=[8,16]", f"{prefix}.tokenizer.code_dim=8"]
            out += [f"{prefix}.tokenizer.codebook_size=32"]
    return out


# --------------------------------------------------------------------------- evaluation


def evaluate_run(run: DemoRun) -> dict[str, Any]:
    """Evaluate the fine-tuned run on the validation split into ``out_dir/eval`` (video
    generation is the video stage's, :func:`video_stage`)."""
    from omnifuse.evaluation import EvalOptions, evaluate
    from omnifuse.heads.decoding import DecodingOptions

    run_dir, out = run.out_dir / "finetune", run.out_dir / "eval"
    # Beam search for the captions: CIDEr 1.06 against greedy's 1.02 for one captioner (500
    # caption-only steps, 300 val samples); it costs a few CPU-seconds on 500 captions.
    options = EvalOptions(
        candidates=500,
        caption_tokenizer="simple",
        max_samples=run.plan.eval_max_samples,
        decoding=DecodingOptions(strategy="beam", beam_size=BEAMS),
    )
    command = f"omnifuse eval {run_dir} --split val --out {out} --strategy beam --beam-size {BEAMS}"
    with run.stage("evaluate", command):
        report: dict[str, Any] = evaluate(run_dir, split="val", out=out, options=options)
    run.plots += [Path(p) for p in report["files"]["plots"]]
    return report
