"""``evaluate(run_dir)``: every task of a run over its val/test data -> metrics.json, report.md,
PNG plots (what ``omnifuse eval`` runs).

Example:
    >>> from omnifuse.evaluation import evaluate
    >>> report = evaluate("runs/shapes", split="test")
    >>> report["tasks"]["shape"]["metrics"]["accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from omnifuse.evaluation.batches import eval_data
from omnifuse.evaluation.judge import Judge
from omnifuse.evaluation.plots import (
    plot_clip_frames,
    plot_confusion,
    plot_examples,
    plot_training_curves,
)
from omnifuse.evaluation.report import write_metrics, write_report
from omnifuse.evaluation.results import SPLITS, EvalOptions, TaskResult
from omnifuse.evaluation.scoring import TaskEval, evaluate_task
from omnifuse.inference.options import InferenceError
from omnifuse.inference.pipeline import Pipeline

EVAL_DIR = "eval"
METRICS_CSV = "metrics.csv"


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str = "val",
    out: str | Path | None = None,
    options: EvalOptions | None = None,
    device: str | torch.device | None = None,
    judge: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate every task of a run and write ``metrics.json``, ``report.md`` and plots.

    Args:
        run_dir: a run directory (``omnifuse train``) or a model directory.
        data: a manifest or shard dir to evaluate instead of each task's ``split``.
        split: ``val`` or ``test``.
        out: output directory (default: ``RUN_DIR/eval``).
        options: sample limits, retrieval pool, decoding, METEOR, plots.
        device: where to run (default: CUDA when available).
        judge: a video classifier run (``omnifuse_experiments/configs/video-judge.yaml``) that
            judges the clips
            of every ``video_generation`` task: ``attribute_accuracy`` (and per attribute),
            ``judge_accuracy_real`` and ``frechet_distance`` (see ``docs/video_generation.md``).

    Returns:
        What ``metrics.json`` holds: ``run``, ``split``, ``data``, ``tasks`` (per task its
        ``type``, ``samples``, ``metrics`` and, for classification, ``classes`` and
        ``confusion_matrix``) and ``files`` (the paths written).

    Raises:
        InferenceError: an unknown split, a task without data for the split, or a judge
            directory that is not a video classifier run.
        FileNotFoundError: ``run_dir`` or ``judge`` does not exist.
    """
    if split not in SPLITS:
        raise InferenceError(f"split={split!r}; valid choices: {', '.join(SPLITS)}")
    opts = options if options is not None else EvalOptions()
    pipe = Pipeline.load(run_dir, device)
    judged_by = None if judge is None else Judge.load(judge, device)
    data_path = None if data is None else Path(data)
    results = {}
    for name in pipe.config.tasks:
        config = eval_data(pipe, name, split, data_path, opts.batch_size)
        results[name] = evaluate_task(TaskEval(pipe, name, config, split, opts, judged_by))
    out_dir = Path(out) if out is not None else Path(run_dir) / EVAL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(out_dir, Path(run_dir), results) if opts.plots else []
    report: dict[str, Any] = {
        "run": str(run_dir),
        "split": split,
        "data": None if data_path is None else str(data_path),
        "judge": None if judge is None else str(judge),
        "tasks": {name: result.to_json() for name, result in results.items()},
    }
    report["files"] = {
        "metrics": str(out_dir / "metrics.json"),
        "report": str(write_report(out_dir, report, plots)),
        "plots": [str(p) for p in plots],
    }
    write_metrics(out_dir, report)
    return report


def find_metrics_csv(run_dir: Path, exclude: Path | None = None) -> Path | None:
    """The run's Lightning ``metrics.csv`` (searched below the run dir), if any."""
    found = sorted(
        p for p in run_dir.rglob(METRICS_CSV) if exclude is None or not p.is_relative_to(exclude)
    )
    return found[0] if found else None


def write_plots(out_dir: Path, run_dir: Path, results: dict[str, TaskResult]) -> list[Path]:
    """Training curves, then per task its confusion matrix, prediction grid and clip frames."""
    plots: list[Path] = []
    csv_path = find_metrics_csv(run_dir, exclude=out_dir) if run_dir.is_dir() else None
    if csv_path is not None:
        curves = plot_training_curves(csv_path, out_dir / "training_curves.png")
        plots += [] if curves is None else [curves]
    for name, result in results.items():
        plots += _task_plots(out_dir, name, result)
    return plots


def _task_plots(out_dir: Path, name: str, result: TaskResult) -> list[Path]:
    plots = []
    if result.confusion is not None and result.classes is not None:
        path = out_dir / f"{name}_confusion.png"
        plots.append(plot_confusion(result.confusion, result.classes, f"{name}: confusion", path))
    if result.examples:
        path = out_dir / f"{name}_samples.png"
        plots.append(plot_examples(result.examples, f"{name}: predictions", path))
    if result.clips is not None:
        plots.append(plot_clip_frames(result.clips, result.prompts, out_dir / f"{name}_clips.png"))
    return plots
