"""Evaluating a video generator head (duck-typed, like :func:`~omnifuse.inference.video`).

The head's tokenizer reconstruction (encode -> quantise -> decode, values in ``[0, 1]``) is scored
by PSNR against the input clips mapped back to ``[0, 1]`` with the video processor's mean/std: a
``reconstruct(pixel_values)`` method, or ``decode(tokenizer.encode_video(pixel_values,
frame_mask))`` as :class:`~omnifuse.heads.video_generator.VideoGenerator` offers. ``generate``
makes the clips shown in the frame plot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from omnifuse.data.collate import Batch
from omnifuse.evaluation.batches import present
from omnifuse.inference.pipeline import Pipeline
from omnifuse.metrics.video import video_psnr


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
