"""``omnifuse demo --quick`` end to end through the CLI: data, pretraining, multi-task
fine-tuning, evaluation and the report."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli.main import app
from omnifuse.config import load_config
from omnifuse.datasets import shapesworld
from omnifuse.inference import Pipeline
from omnifuse_experiments import demo
from omnifuse_experiments.configs import config_path
from omnifuse_experiments.demo import (
    FULL,
    QUICK,
    DemoRun,
    corpus_command,
    has_data,
    shrink_overrides,
)
from omnifuse_experiments.demo_report import (
    CPU_BUDGET_S,
    NOT_MEASURED,
    REQUIRED_TASKS,
    TARGETS,
    write_report,
)

runner = CliRunner()


def table_rows(report: str) -> list[list[str]]:
    """Cells of the metric table (rows after the ``| task | family |`` header)."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| task | family |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    rows = table_rows(report)
    targets = {(row[0], row[2]) for row in rows if row[4]}
    assert {(t.task, t.metric) for t in TARGETS} <= targets
    assert set(REQUIRED_TASKS) <= {task for task, _ in targets}
    for row in rows:
        assert row[3] != NOT_MEASURED and math.isfinite(float(row[3])), row
    assert re.search(r"^Targets met: \d+ of 9\.", report, re.M)
    model, processors, config = omnifuse.load(out / "finetune" / "model")
    assert {"topic", "shape", "answer"} <= set(model.heads)
    assert "speller" not in model.heads  # speech is the Whisper stage's (demo_speech)
    assert "generator" not in model.heads  # video generation is the video stage's (demo_video)
    assert set(processors) == {"audio", "image", "text", "video"}
    assert config.name == "demo-finetune"
    plots = re.findall(r"- \[[^\]]+\]\(([^)]+)\)", report)
    assert plots, "the report lists no plots"
    for plot in plots:
        assert (out / plot).is_file(), plot
    stages = ("data", "check", "pretrain", "finetune", "judge", "video-tokenizer", "video-prior")
    for stage in (*stages, "video-eval", "speech", "evaluate"):
        assert re.search(rf"^\| {stage} \| \d+\.\d \|", report, re.M), stage
    assert f"omnifuse train {config_path('demo-finetune')}" in report
    assert f"omnifuse eval {out / 'video-prior'} --split val" in report
    assert f"--judge {out / 'judge'}" in report
    video = json.loads((out / "video-eval" / "metrics.json").read_text())["tasks"]
    accuracy = video["video_generation"]["metrics"]["attribute_accuracy"]
    row = f"| video_generation | video generation from text | attribute_accuracy | {accuracy:.4f}"
    assert row in report
    check_demo_outputs(out)


def check_demo_outputs(out: Path) -> None:
    """Beyond "it ran": fine-tuning started from the pretrained weights, the report's numbers
    are the evaluator's, and the fine-tuned run serves a prediction for every one of its tasks."""
    pretrained = safetensors.torch.load_file(out / "pretrain" / "model" / "model.safetensors")
    finetuned = safetensors.torch.load_file(out / "finetune" / "model" / "model.safetensors")
    shared = sorted(set(pretrained) & set(finetuned))
    assert len(shared) > 100  # the encoders and the fusion carry over
    # Fine-tuning moved the weights it inherited (not a fresh init, not a frozen copy).
    assert any(not torch.equal(pretrained[k], finetuned[k]) for k in shared)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    pipe = Pipeline.load(out / "finetune", device="cpu")
    assert set(metrics["tasks"]) == set(pipe.tasks)
    assert all(task["samples"] > 0 for task in metrics["tasks"].values()), metrics["tasks"]
    data = out / "data" / "shapesworld"
    row = json.loads((data / "val.jsonl").read_text().splitlines()[0])
    media = {m: [str(data / row[m])] for m in ("image", "audio", "video")}
    for name in pipe.tasks:
        reads = pipe.task_inputs(name)
        text = row["question"] if pipe.task(name).inputs == ("image", "text") else row["text"]
        raws = {m: media[m] if m != "text" else [text] for m in reads}
        predictions = pipe.predict(name, None, out / "predictions" / name, **raws)
        assert len(predictions) == 1 and predictions[0], name


def test_demo_run_configs_resolve_by_name_and_follow_data_overrides() -> None:
    for name in ("demo-pretrain", "demo-finetune"):
        run = load_config(config_path(name), ["data.train=elsewhere/train.jsonl"])
        for task, config in run.tasks.items():
            data = config.data if config.data is not None else run.data
            assert data.train == Path("elsewhere/train.jsonl"), (name, task)
    finetune = load_config(config_path("demo-finetune"))
    assert finetune.tasks["vqa"].data is not None
    assert finetune.tasks["vqa"].data.text_field == "question"
    assert finetune.training.init_from == Path("runs/demo/pretrain")


def test_shrink_overrides_make_a_valid_tiny_model() -> None:
    for name in ("demo-pretrain", "demo-finetune"):
        overrides = shrink_overrides(config_path(name))
        run = load_config(config_path(name), overrides)
        assert run.model.fusion.dim == 32
        assert run.model.encoders.image is not None and run.model.encoders.image.dim == 32


@pytest.mark.parametrize("native", [True, False])
def test_training_stages_run_bf16_only_where_the_cpu_has_it(
    native: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(demo, "native_bf16", lambda: native)
    run = DemoRun(tmp_path, FULL)
    for preset in (demo.PRETRAIN, demo.FINETUNE, demo.JUDGE, demo.VIDEO):
        config, command = demo.stage_config(run, preset, ["training.max_steps=5000"])
        assert config.training.precision == ("bf16-mixed" if native else "32-true"), preset
        assert config.training.max_steps == 5000
        assert load_config(config_path(preset), shlex.split(command)[3:]) == config, preset


def test_data_of_another_size_seed_or_generator_version_is_not_reused(tmp_path: Path) -> None:
    def card(**generator: object) -> Path:
        entry = {"size": 60, "seed": 0, "version": shapesworld.VERSION, **generator}
        (tmp_path / "card.yaml").write_text(yaml.safe_dump({"generator": entry}))
        return tmp_path

    assert not has_data(tmp_path, 60, seed=0)  # no card yet
    assert has_data(card(), 60, seed=0)
    assert not has_data(card(size=61), 60, seed=0)
    assert not has_data(card(seed=1), 60, seed=0)
    assert not has_data(card(version="0.9"), 60, seed=0)


def test_corpus_command_is_the_cli_the_demo_runs(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        '{"id": "a", "captions": ["a red circle"], "question": "how many?"}\n'
    )
    args = shlex.split(corpus_command(tmp_path))
    assert args[:3] == ["omnifuse", "data", "corpus"]
    result = runner.invoke(app, args[1:])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "corpus.txt").read_text().splitlines() == ["a red circle", "how many?"]


# A child that burns CPU and prints how much its own clock says it used.
_BURN = "\n".join(
    [
        "import time",
        "t = time.process_time()",
        "while time.process_time() - t < 0.3: pass",
        "print(time.process_time())",
    ]
)


def test_stage_cpu_time_counts_child_processes(tmp_path: Path) -> None:
    # Data generation runs in worker processes: a stage's CPU time must include them, or the
    # budget is checked against a fraction of what the demo costs.
    run = DemoRun(tmp_path, QUICK)
    with run.stage("child"):
        out = subprocess.run([sys.executable, "-c", _BURN], capture_output=True, check=True)
    child = float(out.stdout)
    assert run.stages[0].cpu_seconds >= child > 0.25


def test_report_states_cpu_time_against_the_budget(tmp_path: Path) -> None:
    run = DemoRun(tmp_path, QUICK)
    for name in ("data", "finetune"):
        with run.stage(name) as stage:
            pass
        stage.cpu_seconds = CPU_BUDGET_S / 2 + 1  # together just over the budget
    report = write_report(tmp_path / "r.md", [], run.stages, [], 10.0, quick=True).read_text()
    assert re.search(r"^\| finetune \| \d+\.\d \| 751 \|", report, re.M)
    assert "1502 CPU-seconds in all" in report
    assert f"≤ {CPU_BUDGET_S:.0f}: not met" in report
