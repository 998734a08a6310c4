"""Studies: the questions users ask next, answered by training and evaluating a few variants of one
run config (``omnifuse_experiments/configs/study-shapes.yaml``) on shapesworld.

``omnifuse study NAME`` runs one study: ``fusion`` (concat vs parallel vs hybrid on VQA and
retrieval), ``multitask`` (three tasks in one run vs each task alone, same steps per run) and
``robustness`` (a modality missing at test time, with and without modality dropout in
training). Each writes ``<out>/<study>.json``, a PNG plot and its section of a results file
(``--results-file``; ``docs/results.md`` holds the published ones). A study is data
(:data:`STUDIES`): variants are dotted config overrides.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnifuse.config.loader import apply_overrides, read_yaml, validate_config
from omnifuse.datasets import make
from omnifuse.evaluation import EvalOptions, evaluate
from omnifuse.training import train
from omnifuse_experiments.configs import config_path
from omnifuse_experiments.reporting import RESULTS_HEADER, machine, write_section

BASE_CONFIG = config_path("study-shapes")
TASKS = ("vqa", "retrieval", "colour")
CANDIDATES = 200
"""Retrieval pool: half of the 400 validation pairs of the 4,000-sample study data."""
FUSIONS = {
    "concat": "{type: concat, dim: 64, num_layers: 2, num_heads: 4}",
    "parallel": "{type: parallel, dim: 64, pooling: gated}",
    "hybrid": "{type: hybrid, mode: co_attention, dim: 64, num_layers: 2, num_heads: 4}",
}
METRIC_NAMES = {
    ("vqa", "accuracy"): "VQA accuracy",
    ("retrieval", "image_to_text/recall@1"): "image→text R@1",
    ("retrieval", "image_to_text/recall@5"): "image→text R@5",
    ("colour", "accuracy"): "colour accuracy",
}


@dataclass(frozen=True)
class Variant:
    """One trained run of a study.

    Attributes:
        name: its row label.
        overrides: dotted overrides of the base config.
        tasks: the tasks it trains (a subset of the base config's).
        tests: evaluation conditions: label -> modalities dropped at test time.
    """

    name: str
    overrides: tuple[str, ...] = ()
    tasks: tuple[str, ...] = TASKS
    tests: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"": ()})


@dataclass(frozen=True)
class Study:
    """A question, its variants and the metrics (``(task, metric)``) that answer it."""

    title: str
    question: str
    variants: tuple[Variant, ...]
    metrics: tuple[tuple[str, str], ...]


BOTH = {"image+text": (), "image only": ("text",), "text only": ("image",)}
STUDIES: dict[str, Study] = {
    "fusion": Study(
        "Fusion ablation",
        "Which fusion family suits reasoning (VQA: image + question) and retrieval? The same "
        "encoders, tasks and steps; only `model.fusion` changes.",
        tuple(Variant(name, (f"model.fusion={spec}",)) for name, spec in FUSIONS.items()),
        (
            ("vqa", "accuracy"),
            ("retrieval", "image_to_text/recall@1"),
            ("retrieval", "image_to_text/recall@5"),
        ),
    ),
    "multitask": Study(
        "Multi-task vs single-task",
        "Does training VQA, retrieval and colour classification together help each task? Every "
        "run has the same number of optimiser steps and batch size, so the multi-task run gives "
        "each task a third of the updates a single-task run gives it.",
        (
            Variant("multi-task (3 tasks)"),
            *(Variant(f"single-task: {t}", tasks=(t,)) for t in TASKS),
        ),
        (
            ("vqa", "accuracy"),
            ("retrieval", "image_to_text/recall@1"),
            ("colour", "accuracy"),
        ),
    ),
    "robustness": Study(
        "Missing modality at test time",
        "Colour of the largest object from image + caption (either alone suffices). How much "
        "does accuracy fall when one modality is missing at test time, with and without "
        "modality dropout (each sample loses image or text with p = 0.3) in training?",
        (
            Variant("no modality dropout", tasks=("colour",), tests=BOTH),
            Variant(
                "modality dropout 0.3",
                ("training.modality_dropout={image: 0.3, text: 0.3}",),
                tasks=("colour",),
                tests=BOTH,
            ),
        ),
        (("colour", "accuracy"),),
    ),
}


@dataclass(frozen=True)
class Budget:
    """Data size and steps of a study run."""

    samples: int
    steps: int
    eval_samples: int | None

    @classmethod
    def of(cls, quick: bool) -> Budget:
        return cls(96, 6, 16) if quick else cls(4000, 2000, None)


def data_overrides(data: Path, tasks: Sequence[str]) -> list[str]:
    """Point the run (and the VQA task's own data section) at ``data``."""
    paths = {"train": data / "train.jsonl", "val": data / "val.jsonl"}
    out = [f"data.{split}={path}" for split, path in paths.items()]
    if "vqa" in tasks:
        out += [f"tasks.vqa.data.{split}={path}" for split, path in paths.items()]
    return out


def run_variant(
    variant: Variant, data: Path, out_dir: Path, budget: Budget, progress: bool
) -> dict[str, dict[str, float | None]]:
    """Train one variant and evaluate it under each test condition: ``{test: {metric: v}}``."""
    overrides = [
        *data_overrides(data, variant.tasks),
        *variant.overrides,
        f"training.max_steps={budget.steps}",
        f"training.progress_bar={str(progress).lower()}",
    ]
    base = read_yaml(BASE_CONFIG)
    base["tasks"] = {t: spec for t, spec in base["tasks"].items() if t in variant.tasks}
    config = validate_config(apply_overrides(base, overrides), source=str(BASE_CONFIG))
    run_dir = out_dir / slug(variant.name)
    result = train(config, run_dir, resume=(run_dir / "checkpoints" / "last.ckpt").exists())
    scores: dict[str, dict[str, float | None]] = {}
    for test, drop in variant.tests.items():
        options = EvalOptions(
            max_samples=budget.eval_samples,
            plots=False,
            drop_modalities=drop,
            candidates=CANDIDATES,
        )
        report = evaluate(
            result.run_dir, out=run_dir / f"eval-{slug(test) or 'all'}", options=options
        )
        scores[test] = {
            f"{task}/{key}": value
            for task, entry in report["tasks"].items()
            for key, value in entry.get("metrics", {}).items()
        }
    return scores


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def run_study(
    name: str,
    out_dir: Path,
    quick: bool = False,
    results_file: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run study ``name``; return (and write to ``out_dir/<name>.json``) its results.

    Its Markdown section goes into ``results_file`` (default ``out_dir/results.md``) and the
    plot into ``images/`` beside that file, where the section's relative link finds it; a quick
    run always writes into ``out_dir`` (its numbers check the wiring, not the answer).

    Raises:
        KeyError: an unknown study name (message lists the valid ones).
    """
    if name not in STUDIES:
        raise KeyError(f"unknown study {name!r}; valid choices: {', '.join(STUDIES)}")
    study, budget = STUDIES[name], Budget.of(quick)
    data = out_dir / "data" / f"shapesworld-{budget.samples}"
    if not (data / "card.yaml").exists():
        make("shapesworld", data, size=budget.samples, seed=0, modalities=("image",))
    start = time.perf_counter()
    rows = {v.name: run_variant(v, data, out_dir, budget, progress) for v in study.variants}
    summary = {
        "study": name,
        "quick": quick,
        "samples": budget.samples,
        "steps": budget.steps,
        "wall_s": time.perf_counter() - start,
        "load_avg": os.getloadavg()[0],
        "results": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2))
    plot = plot_study(study, rows, out_dir / f"{name}.png")
    target = out_dir / "results.md" if quick or results_file is None else results_file
    image = target.parent / "images" / f"study-{name}.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(plot.read_bytes())
    write_section(target, f"study-{name}", markdown(name, study, summary), RESULTS_HEADER)
    return summary


def columns(study: Study) -> list[tuple[str, str, str]]:
    """``(test condition, metric key, header)`` of every table column."""
    tests = study.variants[0].tests
    return [
        (test, f"{task}/{metric}", f"{METRIC_NAMES[(task, metric)]}{f' ({test})' if test else ''}")
        for task, metric in study.metrics
        for test in tests
    ]


def cell(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def markdown(name: str, study: Study, summary: dict[str, Any]) -> str:
    """The study's results-file section: question, command, table (%), plot, budget."""
    cols = columns(study)
    lines = [
        f"## {study.title}",
        "",
        study.question,
        "",
        f"`omnifuse study {name}` "
        "(base config `src/omnifuse_experiments/configs/study-shapes.yaml`; "
        f"{summary['samples']} shapesworld samples, {summary['steps']} steps per run, "
        f"evaluated on the validation split, retrieval among {CANDIDATES} candidates; "
        "values in %).",
        "",
        "| run | " + " | ".join(header for _, _, header in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for variant, scores in summary["results"].items():
        values = [cell(scores.get(test, {}).get(key)) for test, key, _ in cols]
        lines.append(f"| {variant} | " + " | ".join(values) + " |")
    lines += [
        "",
        f"![{study.title}](images/study-{name}.png)",
        "",
        f"Wall time {summary['wall_s'] / 60:.1f} min for all runs (machine: {machine()}; "
        f"1-min load average at the end: {summary['load_avg']:.1f}).",
    ]
    return "\n".join(lines)


def plot_study(
    study: Study, rows: dict[str, dict[str, dict[str, float | None]]], path: Path
) -> Path:
    """Grouped bars: one group per table column, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = columns(study)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(cols), 3.6))
    width = 0.8 / max(1, len(rows))
    for i, (variant, scores) in enumerate(rows.items()):
        values = [scores.get(test, {}).get(key) for test, key, _ in cols]
        heights = [0.0 if v is None else 100 * v for v in values]
        ax.bar([j + i * width for j in range(len(cols))], heights, width, label=variant)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))])
    ax.set_xticklabels([header for _, _, header in cols], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(study.title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
