"""PNG plots of an evaluation: training curves, confusion matrices, prediction grids, clip frames.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), never
through ``pyplot``: no GUI backend, no global figure state, safe in servers and threads.
"""

from __future__ import annotations

import csv
import math
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from omnifuse.evaluation.results import Example

CURVE_KEYWORDS = ("accuracy", "recall", "f1", "bleu", "cider", "rouge", "wer", "cer", "psnr")
"""Non-loss metrics drawn in the second panel of the training curves."""
MAX_ANNOTATED_CLASSES = 20


def printable(text: str, width: int = 28, lines: int = 3) -> str:
    """``text`` wrapped for a subplot title, unprintable characters replaced by ``?``.

    U+FFFD (what undecodable bytes of an untrained model become) is replaced too: the default
    font has no glyph for it.
    """
    clean = "".join(ch if ch.isprintable() and ch != "\ufffd" else "?" for ch in text)
    return "\n".join(textwrap.wrap(clean, width)[:lines]) or "''"


def save(fig: Figure, out: Path) -> None:
    """Write ``fig`` as a PNG.

    Generated text may hold any Unicode character; one the font lacks is drawn as a box, which
    is fine for a preview, so matplotlib's "Glyph ... missing" warnings are silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        fig.savefig(out, dpi=100)


def read_curves(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Columns of a Lightning ``metrics.csv`` -> ``(steps, values)`` of their non-empty rows."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = _number(row.get("step"))
            if step is None:
                continue
            for key, raw in row.items():
                value = _number(raw)
                if key in ("step", "epoch") or value is None:
                    continue
                steps, values = curves.setdefault(key, ([], []))
                steps.append(step)
                values.append(value)
    return curves


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def plot_training_curves(metrics_csv: Path, out: Path) -> Path | None:
    """Losses (left) and quality metrics (right) against the step; None when nothing to draw."""
    curves = read_curves(metrics_csv)
    losses = sorted(k for k in curves if "loss" in k)
    others = sorted(k for k in curves if k not in losses and any(w in k for w in CURVE_KEYWORDS))
    panels = [(title, keys) for title, keys in (("loss", losses), ("metrics", others)) if keys]
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    grid = fig.subplots(1, len(panels), squeeze=False)[0]
    for axes, (title, keys) in zip(grid, panels, strict=True):
        for key in keys:
            steps, values = curves[key]
            style = "o-" if len(steps) < 20 else "-"
            axes.plot(steps, values, style, label=key, markersize=3)
        axes.set(title=title, xlabel="step")
        axes.legend(fontsize=7)
    save(fig, out)
    return out


def plot_confusion(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str, out: Path
) -> Path:
    """Confusion matrix: rows are references, columns predictions (counts annotated)."""
    counts = np.asarray(matrix)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    axes = fig.subplots()
    image = axes.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=axes, shrink=0.8)
    ticks = range(len(classes))
    axes.set_xticks(ticks, [printable(c, 12, 1) for c in classes], rotation=45, ha="right")
    axes.set_yticks(ticks, [printable(c, 12, 1) for c in classes])
    axes.set(title=title, xlabel="predicted", ylabel="reference")
    if len(classes) <= MAX_ANNOTATED_CLASSES:
        high = counts.max() if counts.size else 0
        for (row, col), value in np.ndenumerate(counts):
            colour = "white" if value > high / 2 else "black"
            axes.text(col, row, str(value), ha="center", va="center", color=colour, fontsize=8)
    save(fig, out)
    return out


def plot_examples(examples: Sequence[Example], title: str, out: Path, columns: int = 4) -> Path:
    """A grid of samples: the image (or spectrogram), prompt, prediction and reference."""
    cols = max(1, min(columns, len(examples)))
    rows = max(1, math.ceil(len(examples) / cols))
    fig = Figure(figsize=(3.2 * cols, 3.6 * rows), layout="constrained")
    fig.suptitle(title)
    for index, axes in enumerate(fig.subplots(rows, cols, squeeze=False).flat):
        axes.axis("off")
        if index < len(examples):
            _draw_example(axes, examples[index])
    save(fig, out)
    return out


def _draw_example(axes: Axes, example: Example) -> None:
    picture = example.picture
    if picture is not None and picture.ndim == 3:
        axes.imshow(picture)
    elif picture is not None:
        axes.imshow(picture, origin="lower", aspect="auto", cmap="magma")
    lines = [] if example.prompt is None else [f"Q: {printable(example.prompt, 30, 2)}"]
    lines += [f"pred: {printable(example.prediction)}", f"ref: {printable(example.reference)}"]
    axes.set_title("\n".join(lines), fontsize=7, loc="left", parse_math=False)


def plot_clip_frames(clips: Tensor, prompts: Sequence[str], out: Path, max_frames: int = 8) -> Path:
    """One row per generated clip ``[N, T, 3, H, W]`` in ``[0, 1]``, up to ``max_frames`` frames."""
    count, frames = int(clips.shape[0]), min(int(clips.shape[1]), max_frames)
    fig = Figure(figsize=(1.6 * frames, 1.9 * count), layout="constrained")
    grid = fig.subplots(count, frames, squeeze=False)
    for row in range(count):
        for col in range(frames):
            axes = grid[row][col]
            axes.imshow(clips[row, col].permute(1, 2, 0).clamp(0, 1).numpy())
            axes.axis("off")
        grid[row][0].set_title(
            printable(prompts[row], 60, 1), fontsize=7, loc="left", parse_math=False
        )
    save(fig, out)
    return out
