"""Plots: training curves from a Lightning metrics.csv, clip frames, confusion, safe titles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from omnifuse.evaluation import Example, find_metrics_csv
from omnifuse.evaluation.plots import (
    plot_clip_frames,
    plot_confusion,
    plot_examples,
    plot_training_curves,
    printable,
    read_curves,
)

CSV = "epoch,step,train/loss,val/accuracy,lr-AdamW\n0,0,2.0,,0.1\n0,1,1.5,,0.1\n0,1,,0.25,\n"


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_read_curves_keeps_non_empty_values(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(CSV)
    curves = read_curves(tmp_path / "metrics.csv")
    assert curves["train/loss"] == ([0.0, 1.0], [2.0, 1.5])
    assert curves["val/accuracy"] == ([1.0], [0.25])
    assert "epoch" not in curves and "step" not in curves


def test_training_curves_png_and_nothing_to_draw(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(CSV)
    out = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert out is not None and png_size(out)[0] >= 1000  # two panels side by side
    (tmp_path / "lr.csv").write_text("step,lr-AdamW\n0,0.1\n")
    assert plot_training_curves(tmp_path / "lr.csv", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_find_metrics_csv_skips_the_eval_dir(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.csv").write_text(CSV)
    assert find_metrics_csv(tmp_path, exclude=tmp_path / "eval") is None
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "metrics.csv").write_text(CSV)
    assert find_metrics_csv(tmp_path, exclude=tmp_path / "eval") == tmp_path / "metrics/metrics.csv"


def test_clip_frames_confusion_and_examples(tmp_path: Path) -> None:
    clips = torch.rand(2, 10, 3, 16, 16)
    frames = plot_clip_frames(clips, ["a red $circle$ moves", "b"], tmp_path / "clips.png")
    width, height = png_size(frames)
    assert width > height  # 8 frames per row (capped), 2 rows
    confusion = plot_confusion([[1, 0], [2, 3]], ["cat", "dog"], "t", tmp_path / "c.png")
    assert png_size(confusion)[0] > 100
    examples = [
        Example("pred", "ref", np.zeros((8, 8, 3), dtype=np.float32), "a question?"),
        Example("x\x00y", "ref", np.zeros((4, 20), dtype=np.float32)),
        Example("text only", "ref"),
    ]
    assert png_size(plot_examples(examples, "grid", tmp_path / "e.png"))[0] > 100


def test_printable_titles() -> None:
    assert printable("a\x00b\x1fc\ufffd") == "a?b?c?"
    assert printable("") == "''"
    assert printable("word " * 40, width=10, lines=2).count("\n") == 1
