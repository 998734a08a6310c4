"""``evaluate(run)`` writes metrics.json with the right keys per task type, report.md and PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from omnifuse.evaluation import EvalOptions, evaluate
from omnifuse.inference import InferenceError

EXPECTED_METRICS = {
    "shape": {"accuracy", "macro_f1"},
    "itm": {"accuracy", "matched_accuracy", "unmatched_accuracy"},
    "itc": {
        f"{direction}/{name}"
        for direction in ("image_to_text", "text_to_image")
        for name in ("recall@1", "recall@5", "recall@10", "median_rank", "mrr")
    },
    "mlm": {"loss", "accuracy", "perplexity"},
    "mim": {"loss", "num_masked"},
    "caption": {"bleu_4", "cider", "rouge_l"},
    "asr": {"wer", "cer"},
}


def test_metrics_json_has_every_task_with_its_metrics(
    evaluated: dict[str, Any], eval_run: Path
) -> None:
    written = json.loads((eval_run / "eval" / "metrics.json").read_text())
    assert written == evaluated
    assert written["split"] == "val" and written["data"] is None
    tasks = written["tasks"]
    assert set(tasks) == {*EXPECTED_METRICS, "answer"}
    for name, keys in EXPECTED_METRICS.items():
        assert set(tasks[name]["metrics"]) == keys, name
        assert tasks[name]["samples"] == 2, name
    assert tasks["shape"]["type"] == "classification"
    assert tasks["mim"]["metrics"]["num_masked"] > 0


def test_classification_has_classes_and_confusion_matrix(evaluated: dict[str, Any]) -> None:
    shape = evaluated["tasks"]["shape"]
    assert shape["classes"] == ["circle", "square", "triangle", "star", "diamond", "hexagon"]
    matrix = shape["confusion_matrix"]
    assert len(matrix) == 6 and all(len(row) == 6 for row in matrix)
    assert sum(map(sum, matrix)) == shape["samples"]
    hits = sum(matrix[i][i] for i in range(6))
    assert shape["metrics"]["accuracy"] == hits / shape["samples"]


def test_vqa_answers_get_accuracy_per_question_type(
    evaluated: dict[str, Any], eval_run: Path
) -> None:
    rows = [json.loads(line) for line in (eval_run.parent / "data" / "val.jsonl").open()]
    answer = evaluated["tasks"]["answer"]["metrics"]
    types = {row["question_type"] for row in rows}
    assert set(answer) == {"accuracy", "macro_f1"} | {f"accuracy/{t}" for t in types}
    counts = {t: sum(row["question_type"] == t for row in rows) for t in types}
    overall = sum(answer[f"accuracy/{t}"] * n for t, n in counts.items()) / len(rows)
    assert answer["accuracy"] == pytest.approx(overall)  # per-type accuracies add up


def test_report_md_and_plots(evaluated: dict[str, Any], eval_run: Path) -> None:
    out = eval_run / "eval"
    report = (out / "report.md").read_text()
    assert "| task | metric | value |" in report
    assert "| shape | accuracy |" in report and "| asr | wer |" in report
    assert "![shape_confusion](shape_confusion.png)" in report
    names = {Path(p).name for p in evaluated["files"]["plots"]}
    assert {"shape_confusion.png", "training_curves.png", "caption_samples.png"} <= names
    assert {"asr_samples.png", "answer_samples.png", "shape_samples.png"} <= names
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_dropped_modality_is_absent_at_test_time(eval_run: Path, tmp_path: Path) -> None:
    """Missing-modality robustness: VQA (image + question) is scored from the question alone;
    a task that reads only the dropped modality is skipped with a note, not an error."""
    options = EvalOptions(max_samples=4, plots=False, drop_modalities=("image",))
    report = evaluate(eval_run, out=tmp_path, options=options)
    answer = report["tasks"]["answer"]
    assert answer["samples"] > 0 and 0.0 <= answer["metrics"]["accuracy"] <= 1.0
    assert "every input dropped" in report["tasks"]["shape"]["note"]
    with pytest.raises(InferenceError, match=r"drop_modalities=\['smell'\]; valid choices: audio"):
        EvalOptions(drop_modalities=("smell",))
