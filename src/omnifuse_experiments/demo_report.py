"""The demo's ``report.md``: metrics against the issue's targets, stage times, plots, commands.

The targets are the project's goals on ShapesWorld validation data; they are shown as they are
whether or not a run meets them (a missed target is reported with its measured value).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Target:
    """A goal for one metric of one task: ``value <op> goal``."""

    task: str
    metric: str
    op: str
    goal: float

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the goal (None when it was not measured)."""
        if value is None or not math.isfinite(value):
            return None
        return value >= self.goal if self.op == ">=" else value <= self.goal

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.goal:g}"


TARGETS = (
    Target("shape", "accuracy", ">=", 0.95),
    Target("motion", "accuracy", ">=", 0.95),
    Target("video_shape", "accuracy", ">=", 0.95),
    Target("topic", "accuracy", ">=", 0.95),
    Target("asr", "wer", "<=", 0.15),
    Target("caption", "cider", ">=", 1.0),
    Target("vqa", "accuracy", ">=", 0.85),
    Target("itc", "image_to_text/recall@1", ">=", 0.50),
    Target("video_generation", "attribute_accuracy", ">=", 0.70),
)
"""The issue's targets; visual recognition covers the image task and both video tasks."""

REQUIRED_TASKS = ("shape", "topic", "asr", "caption", "vqa", "itc", "video_generation")
"""One task per target of the issue (seven)."""

FAMILIES = {
    "shape": "visual recognition (image)",
    "motion": "visual recognition (video)",
    "video_shape": "visual recognition (video)",
    "topic": "text classification",
    "asr": "speech recognition",
    "caption": "image captioning",
    "vqa": "cross-modal reasoning: VQA",
    "av_match": "cross-modal reasoning: audio-visual matching",
    "itc": "image→text retrieval",
    "video_generation": "video generation from text",
}

EXTRA_METRICS = {
    "shape": ("macro_f1",),
    "motion": ("macro_f1",),
    "topic": ("macro_f1",),
    "asr": ("cer",),
    "caption": ("bleu_4", "rouge_l"),
    "vqa": ("macro_f1", "accuracy/*"),
    "itc": ("image_to_text/recall@5", "text_to_image/recall@1"),
    "av_match": ("accuracy", "matched_accuracy", "unmatched_accuracy"),
    "video_generation": (
        "attribute_accuracy/*",
        "judge_accuracy_real",
        "frechet_distance",
        "psnr",
    ),
}
"""Metrics shown without a target; ``prefix/*`` shows every metric under the prefix."""

NOT_MEASURED = "not measured"

CPU_BUDGET_S = 1500.0
"""The issue's budget for the whole full demo, data generation included, in CPU-seconds (wall
time on shared machines varies about 2x; the CPU time a run needs varies far less)."""


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    task: str
    family: str
    metric: str
    value: float | None
    target: str = ""
    met: bool | None = None

    def cells(self) -> list[str]:
        """Markdown cells: task, family, metric, value, target, met."""
        value = NOT_MEASURED if self.value is None else f"{self.value:.4f}"
        met = "" if not self.target else {True: "yes", False: "no", None: "n/a"}[self.met]
        return [self.task, self.family, self.metric, value, self.target, met]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {**self.__dict__}


def metric_rows(tasks: Mapping[str, Any]) -> list[Row]:
    """Target rows (every target, measured or not), then the other metrics worth showing.

    Args:
        tasks: ``metrics.json``'s ``tasks`` (task -> ``{"metrics": {...}}``).
    """
    rows = []
    for target in TARGETS:
        value = tasks.get(target.task, {}).get("metrics", {}).get(target.metric)
        family = _family(target.task, tasks)
        rows.append(Row(target.task, family, target.metric, value, str(target), target.met(value)))
    for task, names in EXTRA_METRICS.items():
        metrics = tasks.get(task, {}).get("metrics", {})
        for name in _expand(names, metrics):
            rows.append(Row(task, _family(task, tasks), name, metrics.get(name)))
    return rows


def _family(task: str, tasks: Mapping[str, Any]) -> str:
    """The task's family; retrieval names its candidate pool (the target asks for 500)."""
    family = FAMILIES.get(task, "")
    if tasks.get(task, {}).get("type") == "contrastive":
        family += f" ({tasks[task].get('samples', 0)} candidates)"
    return family


def _expand(names: Sequence[str], metrics: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name.endswith("/*"):
            out += sorted(k for k in metrics if k.startswith(name[:-1]))
        elif name in metrics:
            out.append(name)
    return out


class StageLike(Protocol):
    """What the report needs of a stage (``omnifuse_experiments.demo.Stage``)."""

    name: str
    seconds: float
    command: str
    note: str
    cpu_seconds: float


def write_report(
    path: Path,
    rows: Sequence[Row],
    stages: Sequence[StageLike],
    plots: Sequence[Path],
    total_seconds: float,
    quick: bool,
) -> Path:
    """Write ``report.md``: table, times with the load average, plots, reproduce commands."""
    lines = ["# omnifuse demo", ""]
    if quick:
        lines += [
            "**Quick mode** (`--quick`, for CI): 60 samples, a tiny model and a few steps. The",
            "targets are shown but are not expected to be met.",
            "",
        ]
    lines += [*_table(rows), "", _verdict(rows), "", *_times(stages, total_seconds), ""]
    lines += ["## Plots", ""] + [f"- [{p.name}]({_relative(p, path.parent)})" for p in plots]
    lines += ["", "## Reproduce from the CLI", "", "```bash"]
    lines += [stage.command for stage in stages if stage.command] + ["```", ""]
    path.write_text("\n".join(lines))
    return path


def _table(rows: Sequence[Row]) -> list[str]:
    header = ["task", "family", "metric", "value", "target", "met"]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row.cells()) + " |" for row in rows),
    ]


def _verdict(rows: Sequence[Row]) -> str:
    """How many targets were met, and which were not (they stay as they are: never lowered)."""
    targets = [row for row in rows if row.target]
    missed = [
        f"{r.task} {r.metric} {r.cells()[3]} (target {r.target})" for r in targets if not r.met
    ]
    met = len(targets) - len(missed)
    return f"Targets met: {met} of {len(targets)}." + (
        f" Not met: {'; '.join(missed)}." if missed else ""
    )


def _times(stages: Sequence[StageLike], total_seconds: float) -> list[str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "## Wall time",
        "",
        f"Total {total_seconds:.0f} s ({total_seconds / 60:.1f} min) on {os.cpu_count()} CPU "
        f"cores, {_torch_threads()} torch thread(s); load average at the end (1, 5, 15 min): "
        f"{load}.",
        "",
        "| stage | seconds | CPU seconds | |",
        "|---|---:|---:|---|",
    ]
    rows = [f"| {s.name} | {s.seconds:.1f} | {s.cpu_seconds:.0f} | {s.note} |" for s in stages]
    cpu = sum(s.cpu_seconds for s in stages)
    return [*lines, *rows, f"| total | {total_seconds:.1f} | {cpu:.0f} | |", "", _budget(cpu)]


def _torch_threads() -> int:
    import torch  # lazily: the report's other parts need no torch

    return torch.get_num_threads()


def _budget(cpu_seconds: float) -> str:
    """The CPU-time verdict: stages' CPU time (this process and its children) against the budget."""
    met = "met" if cpu_seconds <= CPU_BUDGET_S else "not met"
    return (
        f"CPU time: {cpu_seconds:.0f} CPU-seconds in all, this process and its child processes "
        f"(budget of the full demo ≤ {CPU_BUDGET_S:.0f}: {met})."
    )


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)
