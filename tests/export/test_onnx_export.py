"""``omnifuse export --format onnx``: graphs, manifest and parity checks on the tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from omnifuse.cli.main import app
from omnifuse.export import ExportError, export_onnx

TASKS = {
    "shape": "classification",
    "itc": "contrastive",
    "itm": "matching",
    "mlm": "mlm",
    "mim": "masked_modeling",
    "caption": "captioning",
    "asr": "captioning",
    "answer": "classification",
}


def manifest(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return found


def test_every_task_is_exported_and_checked(exported: tuple[Path, str]) -> None:
    out, output = exported
    found = manifest(out)
    assert {n: t["type"] for n, t in found["tasks"].items()} == TASKS
    assert found["skipped"] == {}
    for name, check in found["parity"].items():
        assert check["max_abs_diff"] <= check["atol"] == 1e-4, name
        assert f"{name}: max |ort - torch|" in output
    assert found["greedy_parity"] == {"caption": True, "asr": True}
    assert "caption: greedy decoding in onnxruntime matches torch" in output


def test_graphs_are_valid_onnx_with_dynamic_axes(exported: tuple[Path, str]) -> None:
    out, _ = exported
    tasks = manifest(out)["tasks"]
    for task in tasks.values():
        for graph in task["graphs"].values():
            onnx.checker.check_model(str(out / graph["file"]))
    text = tasks["mlm"]["graphs"]["logits"]["dynamic_axes"]
    assert text["text.input_ids"] == {"0": "batch", "1": "text_length"}
    step = tasks["caption"]["graphs"]["decoder_step"]
    assert step["inputs"][:3] == ["input_ids", "context", "context_mask"]
    assert step["dynamic_axes"]["past_key.0"] == {"0": "batch", "2": "past_length"}
    model = onnx.load(str(out / step["file"]))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[3].type.tensor_type.shape.dim]
    assert dims == ["batch", 2, "past_length", 16]  # heads and head width stay static


def test_manifest_rebuilds_processors_without_the_run(exported: tuple[Path, str]) -> None:
    out, _ = exported
    found = manifest(out)
    assert set(found["encoders"]) == {"audio", "image", "text"}
    assert found["tasks"]["shape"]["class_names"] is not None
    assert found["tasks"]["itm"]["class_names"] == ["unmatched", "matched"]
    assert found["exporter"].startswith("torch.onnx.export(dynamo=False)")


def test_failed_parity_fails_the_export(export_run: Path, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")  # a previous export's, now stale
    with pytest.raises(ExportError, match=r"ONNX parity check failed: shape: max \|ort - torch\|"):
        export_onnx(export_run, tmp_path, atol=-1.0, tasks=["shape"], log=lambda _: None)
    assert not (tmp_path / "manifest.json").exists()


def test_cli_refuses_unknown_formats_and_tasks(export_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()  # (--format hf of a run without HF parts: tests/export/test_hf_export.py)
    hf = runner.invoke(app, ["export", str(export_run), "--format", "hf", "--task", "shape"])
    assert hf.exit_code == 2 and "--task selects ONNX graphs" in hf.output
    other = runner.invoke(app, ["export", str(export_run), "--format", "tflite"])
    assert other.exit_code == 2 and "valid choices: onnx, hf" in other.output
    task = runner.invoke(app, ["export", str(export_run), "--task", "nope", "--out", str(tmp_path)])
    assert task.exit_code == 2 and "unknown task(s) ['nope']" in task.output
    missing = runner.invoke(app, ["export", str(tmp_path / "missing")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_export_of_one_task(export_run: Path, tmp_path: Path) -> None:
    report = export_onnx(export_run, tmp_path, tasks=["itc"], log=lambda _: None)
    assert [p.graph for p in report.parity] == ["itc.image", "itc.text"]
    assert all(np.isfinite(p.max_abs_diff) and p.ok for p in report.parity)
    assert set(manifest(tmp_path)["tasks"]) == {"itc"}
