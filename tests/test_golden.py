"""Golden outputs: a refactor that changes numbers fails here.

Recorded once from the code as it stood (``OMNIFUSE_UPDATE_GOLDEN=1 pytest tests/test_golden.py``
rewrites ``tests/golden/*.json``; do that only for a change that is *meant* to alter outputs, and
say so in the commit). Three things are pinned, each from a seeded build:

- every tiny preset's forward pass (fused pooled vector and every head's output) on fixed inputs;
- the training loss of every task of the tiny run (one per task type) on its first batch;
- what ``Pipeline.predict`` and ``omnifuse.evaluation.evaluate`` return for that run.

Tolerance: ``atol=1e-4, rtol=1e-4`` — the same torch build on another core count may reorder a
float reduction, nothing more.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "inference"))

from tiny_run import build_tiny_run, one_thread

import omnifuse
from omnifuse.evaluation import EvalOptions, evaluate
from omnifuse.inference import Pipeline

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("OMNIFUSE_UPDATE_GOLDEN") == "1"
PRESETS = ("tiny", "dual-encoder", "perceiver")
ATOL = RTOL = 1e-4


def check_golden(name: str, values: Any) -> None:
    """Compare ``values`` (nested dicts/lists of numbers, strings) with ``golden/<name>.json``."""
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    _assert_close(json.loads(json.dumps(values)), expected, name)


def _assert_close(actual: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert sorted(actual) == sorted(expected), f"{where}: keys differ"
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: length"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, str):
        assert actual is not None and math.isclose(actual, expected, rel_tol=RTOL, abs_tol=ATOL), (
            f"{where}: {actual} != golden {expected}"
        )
    else:
        assert actual == expected, f"{where}: {actual!r} != golden {expected!r}"


def summary(tensor: torch.Tensor) -> dict[str, Any]:
    """Shape, sum, absolute sum and the first 6 values: enough to catch any change."""
    flat = tensor.detach().float().flatten()
    return {
        "shape": list(tensor.shape),
        "sum": float(flat.sum()),
        "abs_sum": float(flat.abs().sum()),
        "head": [float(v) for v in flat[:6]],
    }


def preset_inputs(processors: omnifuse.Processors) -> dict[str, dict[str, torch.Tensor]]:
    """Fixed processed inputs (batch 2) for every modality a preset has."""
    gen = torch.Generator().manual_seed(0)
    inputs: dict[str, dict[str, torch.Tensor]] = {}
    if "text" in processors:
        inputs["text"] = processors["text"](["a red circle", "two blue squares move left"])
    if "image" in processors:
        size = processors["image"].config.image_size  # type: ignore[attr-defined]
        inputs["image"] = {"pixel_values": torch.randn(2, 3, size, size, generator=gen)}
    if "audio" in processors:
        wave = torch.randn(8000, generator=gen).numpy()
        inputs["audio"] = processors["audio"]([(wave, 16000)] * 2)
    if "video" in processors:
        cfg = processors["video"].config  # type: ignore[attr-defined]
        pixels = torch.randn(2, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=gen)
        frames = torch.ones(2, cfg.num_frames, dtype=torch.bool)
        inputs["video"] = {"pixel_values": pixels, "frame_mask": frames}
    return inputs


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_forward_is_golden(preset: str) -> None:
    with one_thread():
        torch.manual_seed(0)
        model, processors = omnifuse.create_model(preset)
        model.eval()
        with torch.no_grad():
            out = model(preset_inputs(processors))
    values = {"fused_pooled": summary(out.fused.pooled)}
    values |= {f"head/{name}": summary(t) for name, t in sorted(out.heads.items())}
    check_golden(f"preset-{preset}", values)


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny run of tests/inference, built from seed 0 (so its weights are fixed)."""
    with one_thread():
        torch.manual_seed(0)
        yield build_tiny_run(tmp_path_factory.mktemp("golden"))


def _rounded(value: Any) -> Any:
    """JSON-ready predictions: floats kept, long float lists summarised."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) > 6 and all(isinstance(v, float) for v in value):
        return summary(torch.tensor(value))
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_task_losses_are_golden(golden_run: Path) -> None:
    from omnifuse.data.datamodule import OmnifuseDataModule
    from omnifuse.inference.runs import task_data
    from omnifuse.tasks import build_tasks

    pipe = Pipeline.load(golden_run, device="cpu")
    tasks = build_tasks(pipe.config, pipe.model, pipe.processors)
    losses = {}
    with one_thread(), torch.no_grad():
        for name, task in tasks.items():
            data = task_data(pipe.config, name).model_copy(update={"shuffle": False})
            module = OmnifuseDataModule(data, processors=pipe.processors)
            batch = next(iter(module.val_dataloader()))
            torch.manual_seed(0)
            out = task.eval()(pipe.model, batch)
            losses[name] = float(out["loss"])
    check_golden("tiny-run-losses", losses)


def test_predictions_are_golden(golden_run: Path, tmp_path: Path) -> None:
    data = golden_run.parent / "data"
    rows = [json.loads(line) for line in (data / "val.jsonl").read_text().splitlines()[:2]]

    def column(field: str) -> list[Any]:
        return [str(data / r[field]) if field in ("image", "audio") else r[field] for r in rows]

    pipe = Pipeline.load(golden_run, device="cpu")
    requests: dict[str, dict[str, list[Any]]] = {
        "shape": {"image": column("image")},
        "itc": {"image": column("image"), "text": column("text")},
        "itm": {"image": column("image"), "text": column("text")},
        "mlm": {"text": ["a red [MASK] left of a blue square", "the [MASK] moves"]},
        "mim": {"image": column("image")},
        "caption": {"image": column("image")},
        "asr": {"audio": column("audio")},
        "answer": {"image": column("image"), "text": column("question")},
    }
    with one_thread():
        values = {
            task: _rounded(pipe.predict(task, **raws)) for task, raws in sorted(requests.items())
        }
    check_golden("tiny-run-predictions", values)


def test_evaluation_is_golden(golden_run: Path, tmp_path: Path) -> None:
    options = EvalOptions(caption_tokenizer="simple", plots=False, max_samples=4)
    with one_thread():
        report = evaluate(golden_run, out=tmp_path / "eval", options=options, device="cpu")
    metrics = {name: task["metrics"] for name, task in report["tasks"].items()}
    check_golden("tiny-run-evaluation", metrics)
