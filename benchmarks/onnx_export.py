"""ONNX export time and onnxruntime vs PyTorch latency of the tiny test runs (CPU, fp32).

Run: ``python -m benchmarks.onnx_export``. Builds the tiny run of ``tests/inference`` (one task
per type but video) and the small text-to-video run of ``tests/export``, exports both with
``omnifuse.export.export_onnx``, then times every task on the same batch of 4 real
ShapesWorld inputs (prompts for video):

- ``predict``: ``Pipeline.predict`` vs ``OnnxPredictor.predict`` (processing included);
- ``graphs``: the task's ``predict`` on processed tensors vs ``OnnxPredictor.run`` on the
  processed arrays (processing excluded).

Both sides run on one thread (the machine's two cores are shared), median of repeats after a
warm-up. Video generation is greedy on both sides (the ONNX export is greedy-only).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import machine, write_section
from omnifuse.export import OnnxPredictor, export_onnx
from omnifuse.inference import Pipeline
from omnifuse.tasks import PredictOptions

TESTS = Path(__file__).resolve().parents[1] / "tests"
# The runs the export tests use (tests/ has no __init__.py files).
sys.path[:0] = [str(TESTS / "inference"), str(TESTS / "export")]

from export_helpers import build_video_run  # noqa: E402
from tiny_run import build_tiny_run  # noqa: E402

BATCH = 4
GREEDY_VIDEO = {"temperature": 0.0}


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall milliseconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def requests(data_dir: Path) -> dict[str, dict[str, list[Any]]]:
    """A batch of ``BATCH`` real inputs per task of the tiny run."""
    rows = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()]
    rows = rows[:BATCH]
    images = [str(data_dir / r["image"]) for r in rows]
    texts = [str(r["question"]) for r in rows]
    pair = {"image": images, "text": [str(r["text"]) for r in rows]}
    return {
        "shape": {"image": images},
        "itc": pair,
        "itm": pair,
        "mlm": {"text": [f"a red [MASK] {t}" for t in texts]},
        "mim": {"image": images},
        "caption": {"image": images},
        "asr": {"audio": [str(data_dir / r["audio"]) for r in rows]},
        "answer": {"image": images, "text": texts},
    }


def time_task(
    pipe: Pipeline, onnx: OnnxPredictor, task: str, inputs: dict[str, list[Any]], out: Path
) -> tuple[float, float, float, float]:
    """(predict torch, predict onnx, graphs torch, graphs onnx) milliseconds."""
    video = task == "gen"
    options = PredictOptions(generate=GREEDY_VIDEO) if video else None
    repeats = 5 if video else 20
    generate = GREEDY_VIDEO if video else None
    clips = out / "clips" if video else None
    predict_torch = median_ms(lambda: pipe.predict(task, options, clips, **inputs), repeats)
    predict_onnx = median_ms(
        lambda: onnx.predict(task, out_dir=clips, generate=generate, **inputs), repeats
    )
    processed = pipe.process(task, inputs)
    feeds = onnx.process(task, **inputs)
    opts = options or PredictOptions()
    with torch.no_grad():
        graphs_torch = median_ms(
            lambda: pipe.task(task).predict(pipe.model, processed, opts), repeats
        )
    graphs_onnx = median_ms(lambda: onnx.run(task, feeds, generate=generate), repeats)
    return predict_torch, predict_onnx, graphs_torch, graphs_onnx


def export_and_time(
    run: Path, out: Path, tasks: dict[str, dict[str, list[Any]]]
) -> tuple[str, list[str]]:
    """Export ``run``: "seconds (graphs)" and one table row per task."""
    start = time.perf_counter()
    export_onnx(run, out / "onnx", log=lambda _: None)
    seconds = time.perf_counter() - start
    pipe = Pipeline.load(run, device="cpu")
    onnx = OnnxPredictor.load(out / "onnx", threads=1)
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    graphs = sum(len(t["graphs"]) for t in manifest["tasks"].values())
    rows = []
    for task, inputs in tasks.items():
        kind = manifest["tasks"][task]["type"]
        times = time_task(pipe, onnx, task, inputs, out)
        cells = " | ".join(f"{t:.1f}" for t in times)
        rows.append(f"| {task} | {kind} | {cells} | {times[2] / times[3]:.1f}x |")
        print(rows[-1], flush=True)
    return f"{seconds:.1f} s ({graphs} graphs)", rows


def main() -> None:
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny = build_tiny_run(root / "tiny")
        tiny_export, rows = export_and_time(tiny, root / "tiny", requests(root / "tiny" / "data"))
        video = build_video_run(root / "video")
        prompts = {"gen": {"text": ["a red circle moves left", "blue", "a square", "green"]}}
        video_export, video_rows = export_and_time(video, root / "video", prompts)
    body = "\n".join(
        [
            "## ONNX export and onnxruntime latency",
            "",
            "`benchmarks/onnx_export.py`: the tiny run of `tests/inference` (8 tasks) and the "
            "text-to-video run of `tests/export`, exported with `omnifuse export --format onnx` "
            f"(parity checks included), then a batch of {BATCH} real inputs per task. "
            "*predict* = `Pipeline.predict` vs `OnnxPredictor.predict`, processing included; "
            "*graphs* = the task's `predict` on processed tensors vs `OnnxPredictor.run` on the "
            "processed arrays. Greedy decoding on both sides; one thread each (torch and "
            f"onnxruntime), median of repeats. Machine: {machine()}, onnxruntime "
            f"{onnxruntime_version()}. Load average {load:.1f} at the start (the cores are "
            "shared with other jobs): absolute times are noisy, compare within a row.",
            "",
            f"Export time, parity checks included: tiny run {tiny_export}, video run "
            f"{video_export}.",
            "",
            "| task | type | predict torch ms | predict onnx ms | graphs torch ms "
            "| graphs onnx ms | graphs speed-up |",
            "|---|---|---:|---:|---:|---:|---:|",
            *rows,
            *video_rows,
        ]
    )
    write_section("onnx_export", body)


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


if __name__ == "__main__":
    main()
