"""Text-to-video through ONNX: condition, prior step and VQ decoder graphs, greedy codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_helpers import NoTorch

from omnifuse.errors import InferenceError
from omnifuse.export import FRAMES_ATOL, OnnxPredictor, export_onnx
from omnifuse.inference import Pipeline
from omnifuse.tasks import PredictOptions

TEXTS = ["a red circle moves left", "blue"]


@pytest.fixture(scope="module")
def video_export(video_run: Path) -> Path:
    out = video_run.parent / "onnx"
    export_onnx(video_run, out, log=lambda _: None)
    return out


def test_video_graphs_and_greedy_parity(video_export: Path) -> None:
    manifest = json.loads((video_export / "manifest.json").read_text())
    assert set(manifest["tasks"]["gen"]["graphs"]) == {"condition", "prior_step", "decode"}
    assert manifest["greedy_parity"] == {"gen": True}
    frames = manifest["parity"]["gen.frames"]
    assert frames["max_abs_diff"] <= frames["atol"] == FRAMES_ATOL
    assert all(p["atol"] == 1e-4 for g, p in manifest["parity"].items() if g != "gen.frames")
    assert manifest["tasks"]["gen"]["guidance"] == 2.0


def test_greedy_frames_match_pipeline(video_export: Path, video_run: Path, tmp_path: Path) -> None:
    pipe = Pipeline.load(video_run, device="cpu")
    greedy = PredictOptions(generate={"temperature": 0.0})
    want = pipe.task("gen").generate(pipe.model, pipe.process("gen", {"text": TEXTS}), greedy)
    predictor = OnnxPredictor.load(video_export)
    got = np.stack(
        [p["frames"] for p in predictor.run("gen", predictor.process("gen", text=TEXTS))]
    )
    assert got.shape == tuple(want.shape)
    feeds = predictor.process("gen", text=TEXTS)
    with NoTorch():  # the greedy loop over the prior-step graph and the VQ decoder
        again = predictor.run("gen", feeds)
    np.testing.assert_array_equal(np.stack([p["frames"] for p in again]), got)
    np.testing.assert_allclose(got, want.numpy(), atol=FRAMES_ATOL, rtol=0)
    files = predictor.predict("gen", out_dir=tmp_path, text=TEXTS)
    assert [Path(f).name for f in files[1]["files"]] == ["video_001.mp4", "video_001.gif"]


def test_only_greedy_generation_is_exported(video_export: Path, tmp_path: Path) -> None:
    predictor = OnnxPredictor.load(video_export)
    with pytest.raises(InferenceError, match="generates greedily only"):
        predictor.run("gen", predictor.process("gen", text=TEXTS), generate={"temperature": 1.0})
    with pytest.raises(InferenceError, match="writes clips; pass an output directory"):
        predictor.predict("gen", text=TEXTS)
