"""``omnifuse predict`` / ``omnifuse eval`` command functions, mounted on a test typer app."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from omnifuse.cli.evaluate import evaluate
from omnifuse.cli.predict import predict

app = typer.Typer()
app.command("predict")(predict)
app.command("eval")(evaluate)
runner = CliRunner()


def first_image(data_dir: Path) -> str:
    row = json.loads((data_dir / "val.jsonl").read_text().splitlines()[0])
    return str(data_dir / row["image"])


def test_predict_prints_json_and_writes_it(tiny_run: Path, data_dir: Path, tmp_path: Path) -> None:
    image = first_image(data_dir)
    args = ["predict", str(tiny_run), "--task", "shape", "--image", image, "--image", image]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["task"] == "shape" and printed["type"] == "classification"
    assert len(printed["predictions"]) == 2
    assert printed["predictions"][0]["label"] in printed["predictions"][0]["scores"]
    assert json.loads((tmp_path / "predictions.json").read_text()) == printed


def test_predict_decoding_flags(tiny_run: Path, data_dir: Path) -> None:
    image = first_image(data_dir)
    args = ["predict", str(tiny_run), "--task", "caption", "--image", image]
    result = runner.invoke(app, [*args, "--strategy", "beam", "--beam-size", "2"])
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout)["predictions"][0]["text"], str)


def test_user_mistakes_exit_2_with_a_message(tiny_run: Path, data_dir: Path) -> None:
    image = first_image(data_dir)
    cases = [
        (["--task", "nope", "--image", image], "unknown task 'nope'"),
        (["--task", "shape", "--image", "/nowhere/missing.png"], "missing.png: file not found"),
        (["--task", "itm", "--image", image], "missing input text"),
        (["--task", "caption", "--image", image, "--strategy", "topk"], "strategy='topk'"),
        (["--image", image], "several tasks can predict"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["predict", str(tiny_run), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output and "Traceback" not in result.output
    bad_dir = runner.invoke(app, ["predict", str(data_dir), "--image", image])
    assert bad_dir.exit_code == 2 and "neither a run directory" in bad_dir.output


def test_eval_command(tiny_run: Path, tmp_path: Path) -> None:
    args = ["eval", str(tiny_run), "--max-samples", "1", "--no-plots", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "shape" in result.output and "accuracy" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tasks"]["shape"]["samples"] == 1
    bad = runner.invoke(app, ["eval", str(tiny_run), "--split", "train"])
    assert bad.exit_code == 2 and "split='train'; valid choices: val, test" in bad.output
    smell = runner.invoke(app, ["eval", str(tiny_run), "--drop", "smell"])
    assert smell.exit_code == 2 and "drop_modalities=['smell']; valid choices" in smell.output


def test_eval_drop_removes_a_modality(tiny_run: Path, tmp_path: Path) -> None:
    args = ["eval", str(tiny_run), "--max-samples", "2", "--no-plots", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--drop", "audio"])
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "metrics.json").read_text())["tasks"]
    assert "every input dropped" in tasks["asr"]["note"]  # the ASR task reads only audio
    assert tasks["shape"]["samples"] == 2


def test_eval_of_a_broken_manifest_is_a_data_error(tiny_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "image": "x.png", "label": "circle"}\nnot json\n')
    args = ["eval", str(tiny_run), "--data", str(bad), "--no-plots", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "data error" in result.output and "bad.jsonl:2: invalid JSON" in result.output
