"""Regression cases of issue 14's "found already" list, through the CLI a new user runs."""

from __future__ import annotations

import json
from pathlib import Path

import media
import pytest
import torch
from corpus import CLASSES, RUN_TASK, Env
from typer.testing import CliRunner

from omnifuse.cli.main import app


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_one_modality_of_a_fused_four_modality_task(env: Env, tmp_path: Path) -> None:
    code, output = invoke(
        "predict", env.run, "--task", RUN_TASK, "--image", media.png(tmp_path / "a.png")
    )
    assert code == 0, output
    prediction = json.loads(output[output.index("{") :])["predictions"][0]
    assert prediction["index"] in range(len(CLASSES))


@pytest.mark.parametrize("kind", ["missing", "directory", "dangling", "video"])
def test_a_bad_image_path_is_reported_before_missing_inputs(
    env: Env, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / f"{kind}.png"
    if kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone.png")
    elif kind == "video":
        path = media.mp4(tmp_path / "clip.mp4")
    code, output = invoke("predict", env.run, "--task", RUN_TASK, "--image", path)
    assert code == 2
    assert str(path) in output.replace("\n", "")
    assert "missing input" not in output


@pytest.mark.parametrize("device", ["cuda", "tpu9"])
def test_an_unusable_device_is_one_line_with_the_valid_ones(env: Env, device: str) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, output = invoke("predict", env.run, "--text", "hello", "--device", device)
    assert code == 2
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "valid devices here: cpu" in lines[0] and repr(device) in lines[0]


def test_plain_jsonl_without_ids_checks_trains_and_evaluates_with_label_names(
    env: Env, tmp_path: Path
) -> None:
    manifest = env.data / "train.jsonl"
    assert all("id" not in json.loads(line) for line in manifest.read_text().splitlines())
    code, output = invoke("data", "check", manifest)
    assert code == 0, output
    run = tmp_path / "run"
    code, output = invoke("train", env.train_config, "--run-dir", run)
    assert code == 0, output
    code, output = invoke("eval", run, "--device", "cpu", "--no-plots", "--out", tmp_path / "e")
    assert code == 0, output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["tasks"]["fruit"]["classes"] == list(CLASSES)
