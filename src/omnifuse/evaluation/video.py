"""Evaluating what a video task generates: clips for the frame plot and, with a judge, scores.

The tokenizer's reconstruction PSNR is the video task types' own score
(:class:`~omnifuse.tasks.VideoTask`); this module adds what needs a second model.

With a judge (:class:`~omnifuse.evaluation.judge.Judge`, a separately trained video classifier),
:func:`judge_generation` generates one clip per evaluation prompt and scores what the judge
recognises in it against the prompt's labels, next to the judge's accuracy on the real clips (the
ceiling) and the Fréchet distance between the judge's features of generated and real clips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from omnifuse.evaluation.batches import present
from omnifuse.evaluation.judge import Judge
from omnifuse.inference.pipeline import Pipeline, seeded
from omnifuse.inference.runs import card_classes
from omnifuse.metrics.video import attribute_accuracy, frechet_distance
from omnifuse.tasks import PredictOptions, VideoTask
from omnifuse.types import Batch

if TYPE_CHECKING:
    from omnifuse.evaluation.scoring import TaskEval


def unnormalise_clips(pixel_values: Tensor, processor: Any) -> Tensor:
    """``[B, T, 3, H, W]`` processor outputs -> ``[0, 1]`` with the processor's mean/std."""
    config = getattr(processor, "config", None)
    mean = getattr(config, "mean", (0.0, 0.0, 0.0))
    std = getattr(config, "std", (1.0, 1.0, 1.0))
    m = torch.tensor(mean, dtype=pixel_values.dtype, device=pixel_values.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=pixel_values.dtype, device=pixel_values.device).view(3, 1, 1)
    return (pixel_values * s + m).clamp(0.0, 1.0)


def generate_clips(pipe: Pipeline, task: VideoTask, prompts: list[str]) -> Tensor:
    """``[B, T, 3, H, W]`` clips (float, in ``[0, 1]``) that ``task`` generates for ``prompts``
    (sampled with its head's configured ``sampling`` defaults)."""
    text = {key: value.to(pipe.device) for key, value in pipe.processors["text"](prompts).items()}
    return task.generate(pipe.model, {"text": text}, PredictOptions()).float()


def sample_clips(
    pipe: Pipeline, task: VideoTask, batches: Iterator[Batch], count: int
) -> tuple[Tensor | None, list[str]]:
    """Clips ``task`` generates for the first ``count`` text inputs of the data.

    Returns:
        ``[N, T, 3, H, W]`` clips and their prompts; ``(None, [])`` when the data has no text.
    """
    if count <= 0:
        return None, []
    for batch in batches:
        prompts = _prompts(pipe, batch)[:count]
        if prompts:
            return generate_clips(pipe, task, prompts).cpu(), prompts
    return None, []


def _prompts(pipe: Pipeline, batch: Batch) -> list[str]:
    """The batch's text inputs, decoded (what the generator is conditioned on)."""
    text = batch["inputs"].get("text")
    if text is None:
        return []
    tokenizer = pipe.tokenizer()
    return [tokenizer.decode(row).strip() for row in text["input_ids"].tolist()]


@dataclass
class JudgedClips:
    """What :func:`judge_generation` gathers over the evaluation data.

    Attributes:
        intended: attribute field -> the prompts' class names.
        generated: attribute field -> the judge's labels of the generated clips.
        real: attribute field -> the judge's labels of the real clips.
        features: ``"generated"`` / ``"real"`` -> ``[B, D]`` judge features per batch.
        clips: the first generated clips ``[N, T, 3, H, W]`` (for the frame plot).
        prompts: their prompts.
    """

    intended: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    generated: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    real: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    features: dict[str, list[Tensor]] = field(default_factory=lambda: defaultdict(list))
    clips: list[Tensor] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Clips judged."""
        return sum(int(f.shape[0]) for f in self.features["generated"])

    def metrics(self) -> dict[str, float | None]:
        """``attribute_accuracy`` (mean over attributes) and per attribute, the same for the
        real clips (``judge_accuracy_real``), and the judge-feature ``frechet_distance``."""
        out: dict[str, float | None] = {}
        for key, labels in (
            ("attribute_accuracy", self.generated),
            ("judge_accuracy_real", self.real),
        ):
            scores = {f: attribute_accuracy(labels[f], self.intended[f]) for f in self.intended}
            out[key] = sum(scores.values()) / len(scores)
            out |= {f"{key}/{f}": v for f, v in sorted(scores.items())}
        generated, real = (torch.cat(self.features[k]) for k in ("generated", "real"))
        enough = generated.shape[0] >= 2 and real.shape[0] >= 2
        out["frechet_distance"] = frechet_distance(generated, real) if enough else None
        return out


def judge_generation(
    pipe: Pipeline,
    task: VideoTask,
    batches: Iterator[Batch],
    judge: Judge,
    keep_clips: int,
    card_names: Callable[[str], tuple[str, ...] | None],
) -> tuple[JudgedClips, str]:
    """Generate a clip for every prompt of ``batches`` and judge it and the real clip.

    Args:
        pipe: the generator run.
        task: its video generation task (sampled with the head's ``sampling`` defaults).
        batches: evaluation batches with text prompts, real clips and attribute targets.
        judge: the loaded judge.
        keep_clips: generated clips kept for the frame plot.
        card_names: attribute field -> class names of the evaluated data's card (None: unknown),
            which turn its target indices into names.

    Returns:
        The judged clips and a note naming the judge attributes the data could not score.
    """
    judged = JudgedClips()
    fields = {a.field: card_names(a.field) for a in judge.attributes}
    scored = {f: names for f, names in fields.items() if names is not None}
    for batch in batches:
        rows, prompts = _judged_rows(pipe, batch, list(scored))
        if not rows:
            continue
        real = unnormalise_clips(
            batch["inputs"]["video"]["pixel_values"][rows], pipe.processors.get("video")
        )
        generated = generate_clips(pipe, task, prompts)
        _add_verdicts(judged, judge, generated, real)
        for f, names in scored.items():
            judged.intended[f] += [names[int(i)] for i in batch["targets"][f][rows].tolist()]
        room = keep_clips - len(judged.clips)
        judged.clips += list(generated[:room].cpu())
        judged.prompts += prompts[: max(room, 0)]
    missing = sorted(set(fields) - set(scored))
    note = f"judge attributes without labels in the data: {', '.join(missing)}" if missing else ""
    return judged, note


def _add_verdicts(judged: JudgedClips, judge: Judge, generated: Tensor, real: Tensor) -> None:
    for key, clips in (("generated", generated), ("real", real)):
        verdict = judge(clips)
        judged.features[key].append(verdict.features)
        labels = judged.generated if key == "generated" else judged.real
        for f, names in verdict.labels.items():
            labels[f] += names


def _judged_rows(pipe: Pipeline, batch: Batch, fields: list[str]) -> tuple[list[int], list[str]]:
    """Rows with a real clip and every attribute label (and their prompts)."""
    if "video" not in batch["inputs"] or not fields:
        return [], []
    keep = present({"video": batch["inputs"]["video"]}, len(batch["ids"]))
    for f in fields:
        labels = batch["targets"].get(f)
        if labels is None:
            return [], []
        keep &= labels.cpu() >= 0  # IGNORE_INDEX marks a missing label
    prompts = _prompts(pipe, batch)
    rows = [i for i, kept in enumerate(keep.tolist()) if kept and i < len(prompts)]
    return rows, [prompts[i] for i in rows]


def judge_task(job: TaskEval, task: VideoTask, judge: Judge) -> tuple[JudgedClips, str]:
    """:func:`judge_generation` over the task's evaluation data, seeded."""
    sizes = {a.field: len(a.classes) for a in judge.attributes}

    def names(field: str) -> tuple[str, ...] | None:
        return card_classes(job.data, field, sizes[field]).names

    with seeded(job.pipe.device, job.options.seed):
        judged, note = judge_generation(
            job.pipe, task, job.batches(), judge, job.options.examples, names
        )
    if not judged.count:
        note = "; ".join(n for n in (note, "no prompt with a real clip and labels to judge") if n)
    return judged, note
