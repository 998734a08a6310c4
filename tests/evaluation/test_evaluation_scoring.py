"""Evaluation numbers agree with the inference API; data overrides, limits, options, video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from omnifuse.evaluation import EvalOptions, TaskEval, evaluate, evaluate_task
from omnifuse.evaluation.batches import eval_data
from omnifuse.evaluation.video import sample_clips
from omnifuse.inference import InferenceError, Pipeline
from omnifuse.models import MultimodalModel
from omnifuse.tasks import PredictOptions, ScoreOptions, VideoGenerationTask
from omnifuse.types import Batch, Inputs


@pytest.fixture(scope="module")
def pipe(eval_run: Path) -> Pipeline:
    return Pipeline.load(eval_run, device="cpu")


def val_rows(eval_run: Path) -> list[dict[str, Any]]:
    path = eval_run.parent / "data" / "val.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_classification_accuracy_matches_the_pipeline(
    evaluated: dict[str, Any], eval_run: Path, pipe: Pipeline
) -> None:
    rows = val_rows(eval_run)
    images = [str(eval_run.parent / "data" / r["image"]) for r in rows]
    labels = [p["label"] for p in pipe.classify("shape", image=images)]
    expected = sum(p == r["label"] for p, r in zip(labels, rows, strict=True)) / len(rows)
    assert evaluated["tasks"]["shape"]["metrics"]["accuracy"] == pytest.approx(expected)


def test_retrieval_and_matching_match_the_pipeline(
    evaluated: dict[str, Any], eval_run: Path, pipe: Pipeline
) -> None:
    rows = val_rows(eval_run)
    images = [str(eval_run.parent / "data" / r["image"]) for r in rows]
    texts = [r["text"] for r in rows]
    similarity = pipe.embed("image", images) @ pipe.embed("text", texts).T  # (N, N)
    hits = (similarity.argmax(dim=1) == torch.arange(len(rows))).float().mean()
    itc = evaluated["tasks"]["itc"]["metrics"]
    assert itc["image_to_text/recall@1"] == pytest.approx(float(hits))
    matched = [p["label"] == "matched" for p in pipe.classify("itm", image=images, text=texts)]
    assert evaluated["tasks"]["itm"]["metrics"]["matched_accuracy"] == pytest.approx(
        sum(matched) / len(matched)
    )


def test_retrieval_reranked_by_the_matching_head(eval_run: Path, pipe: Pipeline) -> None:
    rows = val_rows(eval_run)
    images = [str(eval_run.parent / "data" / r["image"]) for r in rows]
    texts = [r["text"] for r in rows]
    itc = pipe.config.tasks["itc"].model_copy(update={"rerank_head": "itm", "rerank_top_k": 2})
    config = pipe.config.model_copy(update={"tasks": {**pipe.config.tasks, "itc": itc}})
    reranking = Pipeline(pipe.model, pipe.processors, config, device="cpu")
    job = TaskEval(
        reranking, "itc", eval_data(pipe, "itc", "val", None, None), "val", EvalOptions()
    )
    metrics = evaluate_task(job).metrics
    # Every text is among each image's top 2: the matching head alone ranks them.
    matched = torch.tensor(
        [
            [
                p["scores"]["matched"]
                for p in pipe.classify("itm", image=[image] * len(texts), text=texts)
            ]
            for image in images
        ]
    )  # (images, texts)
    expected = (matched.argmax(dim=1) == torch.arange(len(rows))).float().mean()
    assert metrics["image_to_text/recall@1"] == pytest.approx(float(expected))
    similarity = pipe.embed("image", images) @ pipe.embed("text", texts).T
    first = (similarity.argmax(dim=1) == torch.arange(len(rows))).float().mean()
    assert metrics["image_to_text/recall@1_before_rerank"] == pytest.approx(float(first))


def test_data_override_split_and_limit(eval_run: Path, tmp_path: Path) -> None:
    test_manifest = eval_run.parent / "data" / "test.jsonl"
    options = EvalOptions(max_samples=1, plots=False, caption_tokenizer="simple")
    report = evaluate(eval_run, test_manifest, "test", tmp_path, options, device="cpu")
    assert report["split"] == "test" and report["data"] == str(test_manifest)
    assert {t["samples"] for n, t in report["tasks"].items() if n != "itc"} == {1}
    assert report["tasks"]["itc"]["note"] == "retrieval needs at least 2 pairs"
    assert (tmp_path / "metrics.json").is_file() and not list(tmp_path.glob("*.png"))


def test_masked_losses_are_seeded(pipe: Pipeline) -> None:
    options = EvalOptions(seed=3)
    job = TaskEval(pipe, "mlm", eval_data(pipe, "mlm", "val", None, None), "val", options)
    assert evaluate_task(job).metrics == evaluate_task(job).metrics


def test_errors(eval_run: Path, pipe: Pipeline) -> None:
    with pytest.raises(InferenceError, match="split='train'; valid choices: val, test"):
        evaluate(eval_run, split="train")
    with pytest.raises(InferenceError, match="candidates=1 must be >= 2"):
        EvalOptions(candidates=1)
    no_val = pipe.config.data.model_copy(update={"val": None})
    blind = Pipeline(pipe.model, pipe.processors, pipe.config.model_copy(update={"data": no_val}))
    with pytest.raises(InferenceError, match="task 'shape' has no val data"):
        eval_data(blind, "shape", "val", None, None)


class ConstantClips(VideoGenerationTask):
    """A video task whose generator makes mid-grey clips (no model needed)."""

    def generate(self, model: MultimodalModel, inputs: Inputs, options: PredictOptions) -> Tensor:
        return torch.full((int(inputs["text"]["input_ids"].shape[0]), 3, 3, 8, 8), 0.5)


def video_batch(pipe: Pipeline) -> Batch:
    clips = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    text = pipe.processors["text"](["a red circle", "a blue star"])
    video = {"pixel_values": clips, "frame_mask": torch.ones(2, 3, dtype=torch.bool)}
    return Batch(inputs={"video": video, "text": text}, targets={}, ids=["a", "b"])


def test_video_task_psnr_and_clips(pipe: Pipeline) -> None:
    task = ConstantClips("gen", 1.0, ("text",), "gen")
    clips = list(torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5)
    exact = task.score([{"frames": c} for c in clips], clips, ScoreOptions())
    assert (exact.metrics["psnr"], exact.samples) == (100.0, 2)  # identical: capped at 100 dB
    noisy = task.score([{"frames": (c + 0.1).clamp(0, 1)} for c in clips], clips, ScoreOptions())
    psnr = noisy.metrics["psnr"]
    assert psnr is not None and 15.0 < psnr < 25.0  # 0.1 error -> 20 dB (less where clamped)
    assert task.score([], [], ScoreOptions()).note.endswith("PSNR not computed")
    generated, prompts = sample_clips(pipe, task, iter([video_batch(pipe)]), 1)
    assert generated is not None and generated.shape == (1, 3, 3, 8, 8)
    assert prompts == ["a red circle"]
