"""``OnnxPredictor`` (onnxruntime + numpy) predicts what ``Pipeline.predict`` does, per task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from export_helpers import NoTorch

from omnifuse.errors import InferenceError
from omnifuse.export import ATOL, OnnxPredictor
from omnifuse.inference import Pipeline


def requests(data_dir: Path) -> dict[str, dict[str, list[Any]]]:
    rows = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()][:3]
    images = [str(data_dir / r["image"]) for r in rows]
    audio = [str(data_dir / r["audio"]) for r in rows]
    texts = ["a red [MASK]", "is there a [MASK] circle here?", rows[2]["text"]]
    return {
        "shape": {"image": images},
        "itc": {"image": images, "text": texts},
        "itm": {"image": images, "text": texts},
        "mlm": {"text": texts},
        "mim": {"image": images},
        "caption": {"image": images},
        "asr": {"audio": audio},
        "answer": {"image": images, "text": texts},
    }


def assert_close(want: Any, got: Any, path: str = "") -> None:
    """Equal structure and strings/ints/labels; floats within ATOL."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(want) == list(got), path
        for key in want:
            assert_close(want[key], got[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(want) == len(got), path
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            assert_close(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=ATOL), path
    else:
        assert want == got, path


@pytest.fixture(scope="module")
def predictor(exported: tuple[Path, str]) -> OnnxPredictor:
    return OnnxPredictor.load(exported[0])


@pytest.mark.parametrize("task", ["shape", "itc", "itm", "mlm", "mim", "caption", "asr", "answer"])
def test_onnx_predictions_match_pipeline(
    task: str, predictor: OnnxPredictor, export_pipe: Pipeline, export_run: Path
) -> None:
    inputs = requests(export_run.parent / "data")[task]
    want = export_pipe.predict(task, **inputs)
    got = predictor.predict(task, **inputs)
    assert_close(want, got)
    if task in ("caption", "asr"):  # greedy captions are identical, not just close
        assert [p["text"] for p in got] == [p["text"] for p in want]


@pytest.mark.parametrize("task", ["shape", "itc", "itm", "mlm", "mim", "caption", "asr", "answer"])
def test_graph_execution_calls_no_torch(
    task: str, predictor: OnnxPredictor, export_pipe: Pipeline, export_run: Path
) -> None:
    inputs = requests(export_run.parent / "data")[task]
    feeds = predictor.process(task, **inputs)  # processors: still torch
    with NoTorch():
        got = predictor.run(task, feeds)
    assert_close(export_pipe.predict(task, **inputs), got)


def test_single_modality_embedding(predictor: OnnxPredictor, export_pipe: Pipeline) -> None:
    want = export_pipe.predict("itc", text=["a red square"])
    got = predictor.predict("itc", text=["a red square"])
    assert_close(want, got)
    assert "similarity" not in got[0]


def test_request_errors(predictor: OnnxPredictor) -> None:
    with pytest.raises(InferenceError, match="unknown task 'nope'; exported tasks: shape"):
        predictor.predict("nope", image=["x.png"])
    with pytest.raises(InferenceError, match="missing input text"):
        predictor.predict("answer", image=[np_image()])
    with pytest.raises(InferenceError, match="it does not read audio"):
        predictor.predict("shape", image=[np_image()], audio=[(np_audio(), 16000)])


def test_load_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        OnnxPredictor.load(tmp_path)


def np_image() -> Any:
    import numpy as np

    return np.zeros((32, 32, 3), dtype=np.uint8)


def np_audio() -> Any:
    import numpy as np

    return np.zeros(1600, dtype=np.float32)
