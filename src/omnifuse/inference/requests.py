"""``Pipeline.predict``: one entry point for every task type (what ``omnifuse predict`` runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from omnifuse.config.tasks import task_type
from omnifuse.inference.options import DecodingOptions, InferenceError
from omnifuse.inference.runs import check_task, describe_tasks

if TYPE_CHECKING:
    from omnifuse.inference.pipeline import Pipeline

CLASSIFYING = ("classification", "matching")
VIDEO_TASKS = ("video_generation", "video_tokenizer")


@torch.no_grad()
def predict(
    pipe: Pipeline,
    task: str | None,
    options: DecodingOptions | None,
    out_dir: str | Path | None,
    inputs: Mapping[str, Sequence[Any] | None],
) -> list[dict[str, Any]]:
    """Run ``task`` on raw inputs, whatever its type; one JSON-ready dict per sample.

    classification/matching -> ``{label, score, scores}``; captioning -> ``{text}``;
    contrastive -> ``{embeddings}`` (+ ``similarity`` when both modalities are given); mlm ->
    ``{text, masks}``; masked_modeling -> ``{reconstruction_mse, masked}``; video generation ->
    ``{files}`` written to ``out_dir``.

    Args:
        pipe: the loaded pipeline.
        task: the task (default: the run's only task).
        options: decoding options of text generation.
        out_dir: where generated files go (video tasks).
        inputs: modality -> one raw value per sample (None: not given).

    Raises:
        InferenceError: unknown task, wrong inputs, or a task type without predictions.
    """
    name = default_task(pipe, task)
    kind = task_type(check_task(pipe.config, name))
    given = {m: v for m, v in inputs.items() if v is not None}
    if kind in CLASSIFYING:
        return [dict(p) for p in pipe.classify(name, **given)]
    if kind == "captioning":
        return [{"text": t} for t in pipe.generate_text(name, given, options)]
    if kind == "contrastive":
        return embed_pairs(pipe, name, given)
    if kind == "mlm":
        return [dict(p) for p in pipe.fill_mask_inputs(name, given, top_k=5)]
    if kind == "masked_modeling":
        return [dict(p) for p in pipe.reconstruct_inputs(name, given, seed=0)]
    if kind in VIDEO_TASKS or pipe.generates_video(name):
        return _predict_video(pipe, name, given, out_dir)
    raise InferenceError(f"task {name!r} has type {kind!r}, which has no prediction")


def default_task(pipe: Pipeline, task: str | None) -> str:
    """``task`` (checked), or the run's only task when None.

    Raises:
        InferenceError: an unknown task, or None for a run with several tasks.
    """
    if task is not None:
        check_task(pipe.config, task)
        return task
    if len(pipe.config.tasks) != 1:
        raise InferenceError(
            f"name a task (task=... / --task); the run's tasks: {describe_tasks(pipe.config)}"
        )
    return next(iter(pipe.config.tasks))


def embed_pairs(
    pipe: Pipeline, name: str, given: Mapping[str, Sequence[Any]]
) -> list[dict[str, Any]]:
    """Contrastive task ``name``: each given modality's embedding, and their cosine similarity.

    Raises:
        InferenceError: no input, an input the task does not embed, or lists of different
            lengths.
    """
    cfg = pipe.config.tasks[name]
    a, b = str(getattr(cfg, "a")), str(getattr(cfg, "b"))  # noqa: B009  # contrastive fields
    heads = {a: str(getattr(cfg, "head_a")), b: str(getattr(cfg, "head_b"))}  # noqa: B009
    if not given or set(given) - set(heads):
        raise InferenceError(
            f"task {name!r} embeds {a} and/or {b}; got {', '.join(sorted(given)) or 'nothing'}"
        )
    embeddings = {}
    for modality, values in sorted(given.items()):
        encoded = pipe.model.encode({modality: pipe.process_modality(modality, values)})
        embeddings[modality] = pipe.model.heads[heads[modality]](encoded[modality]).cpu()
    rows = {int(e.shape[0]) for e in embeddings.values()}
    if len(rows) > 1:
        raise InferenceError(f"inputs differ in length ({sorted(rows)}); give one per sample")
    similarity = (embeddings[a] * embeddings[b]).sum(dim=-1) if len(embeddings) == 2 else None
    return [
        {"embeddings": {m: e[i].tolist() for m, e in embeddings.items()}}
        | ({} if similarity is None else {"similarity": float(similarity[i])})
        for i in range(rows.pop())
    ]


def _predict_video(
    pipe: Pipeline, name: str, given: Mapping[str, Sequence[Any]], out_dir: str | Path | None
) -> list[dict[str, Any]]:
    if set(given) != {"text"}:
        raise InferenceError(f"task {name!r} generates video from text; pass only text")
    if out_dir is None:
        raise InferenceError(f"task {name!r} writes clips; pass an output directory (--out)")
    paths = pipe.generate_video(given["text"], out_dir, task=name)
    return [{"files": [str(p) for p in row]} for row in paths]
