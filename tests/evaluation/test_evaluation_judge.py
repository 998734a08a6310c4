"""Judging generated clips with a separately trained video classifier (``evaluate(judge=...)``).

A tiny judge is overfitted on a handful of real shapesworld clips; a tiny generator run (never
trained) is evaluated on the same clips. The judge must recognise the real clips (the ceiling) and
must not recognise the untrained generator's noise; a generator that returns the real clips must
score exactly the ceiling with a Fréchet distance of about zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli.evaluate import evaluate as evaluate_command
from omnifuse.config import load_config
from omnifuse.config.run import RunConfig
from omnifuse.data.datamodule import OmnifuseDataModule
from omnifuse.datasets import make
from omnifuse.evaluation import evaluate
from omnifuse.evaluation.batches import iter_batches
from omnifuse.evaluation.judge import Judge
from omnifuse.evaluation.video import judge_generation, unnormalise_clips
from omnifuse.inference.options import InferenceError
from omnifuse.inference.pipeline import Pipeline
from omnifuse.models import build_model
from omnifuse.tasks import VideoTask, build_tasks
from omnifuse_experiments.configs import config_path

CLIPS = "{num_frames: 4, image_size: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}"
VIDEO = (
    "{type: tubelet_vit, dim: 32, num_layers: 1, num_heads: 2, patch_size: 4, "
    f"processor: {CLIPS}}}"
)
ATTRIBUTES = {"video_colour": 6, "motion": 4, "video_label": 6}
GENERATOR = (
    "{type: video_generator, source: text, "
    "tokenizer: {stage_dims: [8, 16], temporal_downsample: 2, codebook_size: 16, code_dim: 8}, "
    "prior: {dim: 32, num_layers: 1, num_heads: 2}}"
)


def data_overrides(data_dir: Path, **extra: str) -> list[str]:
    # The judge's val split is its train split: it is meant to overfit these clips.
    train = data_dir / "train.jsonl"
    return [f"data.train={train}", f"data.val={train}", "data.batch_size=8"] + [
        f"data.{k}={v}" for k, v in extra.items()
    ]


def save_run(root: Path, run: RunConfig, model: Any, processors: Any) -> Path:
    """A run dir as training leaves it: config.yaml + model/."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(run.model_dump(mode="json"), sort_keys=False))
    omnifuse.save(root / "model", model, processors, run)
    return root


def train_judge(root: Path, data_dir: Path, steps: int = 80) -> Path:
    """The ``video-judge`` experiment run config shrunk, overfitted on the first 8 train clips."""
    overrides = [
        f"model.encoders.video={VIDEO}",
        "model.fusion={type: concat, dim: 32, num_layers: 0, num_heads: 2}",
        *data_overrides(data_dir, shuffle="false"),
    ]
    run = load_config(config_path("video-judge"), overrides)
    torch.manual_seed(0)
    model, processors = build_model(run.model)
    tasks = build_tasks(run, model, processors)
    batch = next(iter(OmnifuseDataModule(run.data, processors=processors).val_dataloader()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):  # full-batch: the same 8 clips every step
        loss = sum(task(model.train(), batch)["loss"] for task in tasks.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_run(root, run, model.eval(), processors)


def untrained_generator(root: Path, data_dir: Path) -> Path:
    """The ``video-generation`` experiment run config shrunk to the judge's clips, never trained."""
    overrides = [
        f"model.encoders.video={VIDEO}",
        "model.encoders.text={type: transformer, dim: 32, num_layers: 1, num_heads: 2}",
        "model.fusion={type: concat, dim: 32, num_layers: 0, num_heads: 2}",
        f"model.heads={{generator: {GENERATOR}}}",
        *data_overrides(data_dir),
    ]
    run = load_config(config_path("video-generation"), overrides)
    torch.manual_seed(0)
    model, processors = build_model(run.model)
    return save_run(root, run, model.eval(), processors)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(generator run, judge run) over an 8-clip shapesworld (10 rows: 8 train)."""
    root = tmp_path_factory.mktemp("judge")
    data_dir = root / "data"
    make("shapesworld", data_dir, size=10, seed=0, modalities=["video"], workers=1, progress=False)
    return untrained_generator(root / "generator", data_dir), train_judge(root / "judge", data_dir)


@pytest.fixture(scope="module")
def report(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    generator, judge = runs
    out = tmp_path_factory.mktemp("eval")
    return evaluate(generator, out=out, device="cpu", judge=judge)


def test_report_has_the_judged_metrics_in_range(report: dict[str, Any]) -> None:
    metrics = report["tasks"]["generation"]["metrics"]
    keys = {f"{k}/{f}" for k in ("attribute_accuracy", "judge_accuracy_real") for f in ATTRIBUTES}
    assert keys | {"attribute_accuracy", "judge_accuracy_real", "frechet_distance"} <= set(metrics)
    for key in keys:
        assert 0.0 <= metrics[key] <= 1.0, key
    per_attribute = [metrics[f"attribute_accuracy/{f}"] for f in ATTRIBUTES]
    assert metrics["attribute_accuracy"] == pytest.approx(sum(per_attribute) / 3)
    assert metrics["frechet_distance"] > 0.0
    assert report["tasks"]["generation"]["samples"] == 8
    assert report["judge"] is not None and "_clips" in " ".join(report["files"]["plots"])


def test_overfit_judge_recognises_real_clips_but_not_untrained_generations(
    report: dict[str, Any],
) -> None:
    metrics = report["tasks"]["generation"]["metrics"]
    assert metrics["judge_accuracy_real"] >= 0.9  # it was trained on exactly these clips
    # Noise from an untrained prior and decoder: chance level is (1/6 + 1/4 + 1/6) / 3 ~ 0.19.
    assert metrics["attribute_accuracy"] <= metrics["judge_accuracy_real"] - 0.3


def test_real_clips_as_generations_score_the_ceiling(runs: tuple[Path, Path]) -> None:
    generator, judge_dir = runs
    pipe, judge = Pipeline.load(generator, "cpu"), Judge.load(judge_dir, "cpu")
    data = pipe.config.data.model_copy(update={"shuffle": False})
    batch = next(iter_batches(pipe, data, "val", None))
    real = unnormalise_clips(batch["inputs"]["video"]["pixel_values"], pipe.processors["video"])
    tokenizer = pipe.tokenizer()
    prompts = [
        tokenizer.decode(row).strip() for row in batch["inputs"]["text"]["input_ids"].tolist()
    ]
    by_prompt = dict(zip(prompts, real, strict=True))

    def real_clips(model: Any, inputs: Any, options: Any) -> torch.Tensor:
        texts = [tokenizer.decode(row).strip() for row in inputs["text"]["input_ids"].tolist()]
        return torch.stack([by_prompt[t] for t in texts])

    task = pipe.task("generation")
    assert isinstance(task, VideoTask)
    task.generate = real_clips  # type: ignore[method-assign]
    names = {a.field: a.classes for a in judge.attributes}  # one shapesworld card: same order
    judged, note = judge_generation(pipe, task, iter([batch]), judge, 2, names.get)
    metrics = judged.metrics()
    assert note == "" and judged.count == 8 and len(judged.clips) == 2
    for field in ATTRIBUTES:
        assert metrics[f"attribute_accuracy/{field}"] == metrics[f"judge_accuracy_real/{field}"]
    assert metrics["frechet_distance"] == pytest.approx(0.0, abs=1e-3)


def test_judge_resamples_clips_to_its_processor(runs: tuple[Path, Path]) -> None:
    judge = Judge.load(runs[1], "cpu")
    clips = torch.rand(2, 8, 3, 32, 32)
    prepared = judge.prepare(clips)
    assert prepared["pixel_values"].shape == (2, 4, 3, 16, 16)
    assert prepared["pixel_values"].min() >= -1.0 and prepared["pixel_values"].max() <= 1.0
    verdict = judge(clips)
    assert verdict.features.shape == (2, 32) and set(verdict.labels) == set(ATTRIBUTES)


def test_bad_judge_dirs_are_clear_errors(runs: tuple[Path, Path], tmp_path: Path) -> None:
    generator, _ = runs
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Judge.load(tmp_path / "missing")
    with pytest.raises(InferenceError, match="no classification task reading only video"):
        Judge.load(generator)
    with pytest.raises(InferenceError, match=r"judge .*neither a run directory"):
        Judge.load(tmp_path)


def test_cli_judge_option(runs: tuple[Path, Path], tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("eval")(evaluate_command)
    app.command("noop")(lambda: None)  # two commands: typer keeps the "eval" subcommand name
    runner = CliRunner()
    generator, judge = runs
    args = ["eval", str(generator), "--judge", str(judge), "--no-plots", "--max-samples", "4"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "attribute_accuracy" in result.output and "frechet_distance" in result.output
    bad = runner.invoke(app, ["eval", str(generator), "--judge", str(tmp_path / "nope")])
    assert bad.exit_code == 2
    assert "does not exist" in bad.output
