"""Evaluating a video generator head (duck-typed, like :func:`~omnifuse.inference.video`).

The head's tokenizer reconstruction (encode -> quantise -> decode, values in ``[0, 1]``) is scored
by PSNR against the input clips mapped back to ``[0, 1]`` with the video processor's mean/std: a
``reconstruct(pixel_values)`` method, or ``decode(tokenizer.encode_video(pixel_values,
frame_mask))`` as :class:`~omnifuse.heads.video_generator.VideoGenerator` offers. ``generate``
makes the clips shown in the frame plot.

With a judge (:class:`~omnifuse.evaluation.judge.Judge`, a separately trained video classifier),
:func:`judge_generation` generates one clip per evaluation prompt and scores what the judge
recognises in it against the prompt's labels, next to the judge's accuracy on the real clips (the
ceiling) and the Fréchet distance between the judge's features of generated and real clips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from omnifuse.data.collate import Batch
from omnifuse.evaluation.batches import present
from omnifuse.evaluation.judge import Judge
from omnifuse.inference.pipeline import Pipeline
from omnifuse.metrics.video import attribute_accuracy, frechet_distance, video_psnr


def unnormalise_clips(pixel_values: Tensor, processor: Any) -> Tensor:
    """``[B, T, 3, H, W]`` processor outputs -> ``[0, 1]`` with the processor's mean/std."""
    config = getattr(processor, "config", None)
    mean = getattr(config, "mean", (0.0, 0.0, 0.0))
    std = getattr(config, "std", (1.0, 1.0, 1.0))
    m = torch.tensor(mean, dtype=pixel_values.dtype, device=pixel_values.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=pixel_values.dtype, device=pixel_values.device).view(3, 1, 1)
    return (pixel_values * s + m).clamp(0.0, 1.0)


Reconstructor = Callable[[Tensor, Tensor], Tensor]
"""``(pixel_values [B, T, 3, H, W], frame_mask [B, T]) -> clips [B, T, 3, H, W]`` in ``[0, 1]``."""


def reconstructor(head: nn.Module) -> Reconstructor | None:
    """How ``head`` reconstructs clips: its ``reconstruct(pixel_values)``, else
    ``decode(tokenizer.encode_video(pixel_values, frame_mask))`` (``VideoGenerator``); None when
    it can do neither."""
    reconstruct = getattr(head, "reconstruct", None)
    if callable(reconstruct):
        return lambda pixels, frame_mask: reconstruct(pixels)
    encode = getattr(getattr(head, "tokenizer", None), "encode_video", None)
    decode = getattr(head, "decode", None)
    if callable(encode) and callable(decode):
        return lambda pixels, frame_mask: decode(encode(pixels, frame_mask))
    return None


def reconstruction_psnr(
    pipe: Pipeline, head: str, batches: Iterator[Batch]
) -> tuple[float | None, int, str]:
    """Mean PSNR (dB) of ``head.reconstruct`` over the clips of ``batches``.

    Returns:
        ``(psnr, clips scored, note)``; psnr is None (and the note says why) when the head has
        no ``reconstruct`` or the data has no video.
    """
    reconstruct = reconstructor(pipe.model.heads[head])
    if reconstruct is None:
        return None, 0, f"head {head!r} cannot reconstruct clips; PSNR not computed"
    predictions: list[Tensor] = []
    references: list[Tensor] = []
    for batch in batches:
        video = batch["inputs"].get("video")
        if video is None:
            continue
        keep = present({"video": video}, len(batch["ids"])).to(video["pixel_values"].device)
        pixels, frame_mask = video["pixel_values"][keep], video["frame_mask"][keep]
        if pixels.shape[0] == 0:
            continue
        predictions += list(reconstruct(pixels, frame_mask).float().cpu())
        references += list(unnormalise_clips(pixels, pipe.processors.get("video")).float().cpu())
    if not predictions:
        return None, 0, "no video clips in the evaluation data; PSNR not computed"
    return video_psnr(predictions, references)[1], len(predictions), ""


def sample_clips(
    pipe: Pipeline, head: str, batches: Iterator[Batch], count: int
) -> tuple[Tensor | None, list[str]]:
    """Clips ``head`` generates for the first ``count`` text inputs of the data.

    Returns:
        ``[N, T, 3, H, W]`` clips and their prompts; ``(None, [])`` when the data has no text.
    """
    if count <= 0:
        return None, []
    for batch in batches:
        prompts = _prompts(pipe, batch)[:count]
        if prompts:
            return pipe.video_frames(head, prompts).float().cpu(), prompts
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
    head: str,
    batches: Iterator[Batch],
    judge: Judge,
    keep_clips: int,
    card_names: Callable[[str], tuple[str, ...] | None],
) -> tuple[JudgedClips, str]:
    """Generate a clip for every prompt of ``batches`` and judge it and the real clip.

    Args:
        pipe: the generator run.
        head: its video generator head (sampled with its configured ``sampling`` defaults).
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
        generated = pipe.video_frames(head, prompts).float()
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
