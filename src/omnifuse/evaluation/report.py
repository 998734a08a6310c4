"""Evaluation outputs: ``metrics.json`` (every number) and ``report.md`` (a task | metric | value
table with the plots)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


def write_metrics(out_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as ``metrics.json`` (atomically: a reader never sees half a file)."""
    path = out_dir / METRICS_FILE
    tmp = path.with_name(f".{METRICS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def format_value(value: Any) -> str:
    """A table cell: 4 decimals for floats, ``n/a`` for missing values."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metric_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(task, metric, value)`` rows: each task's sample count, metrics and note."""
    rows: list[tuple[str, str, str]] = []
    for task, result in report["tasks"].items():
        rows.append((task, "samples", str(result["samples"])))
        rows += [(task, name, format_value(v)) for name, v in result["metrics"].items()]
        if result.get("note"):
            rows.append((task, "note", str(result["note"]).replace("|", "/")))
    return rows


def render_report(report: dict[str, Any], plots: Sequence[Path], out_dir: Path) -> str:
    """The Markdown report: header, the task | metric | value table, then the plots."""
    data = report.get("data") or "the run's data"
    judge = f" Generated clips judged by `{report['judge']}`." if report.get("judge") else ""
    lines = [
        f"# Evaluation: {report['run']}",
        "",
        f"Split `{report['split']}` of {data}.{judge}",
        "",
        "| task | metric | value |",
        "|---|---|---|",
        *(f"| {task} | {metric} | {value} |" for task, metric, value in metric_rows(report)),
    ]
    if plots:
        lines += ["", "## Plots", ""]
        for plot in plots:
            relative = plot.relative_to(out_dir) if plot.is_relative_to(out_dir) else plot
            lines += [f"![{plot.stem}]({relative.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(out_dir: Path, report: dict[str, Any], plots: Sequence[Path] = ()) -> Path:
    """Write ``report.md`` into ``out_dir``."""
    path = out_dir / REPORT_FILE
    path.write_text(render_report(report, plots, out_dir))
    return path
