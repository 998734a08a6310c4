"""Evaluation options (a frozen dataclass verified once) and per-task results."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import Tensor

from omnifuse.config.base import MODALITIES
from omnifuse.inference.options import DecodingOptions, InferenceError

SPLITS = ("val", "test")
CAPTION_TOKENIZERS = ("auto", "ptb", "simple")


@dataclass(frozen=True)
class EvalOptions:
    """How a run is evaluated.

    Attributes:
        max_samples: evaluate at most this many samples per task (None: the whole split).
        candidates: retrieval (contrastive) ranks among at most this many pairs.
        meteor: also compute METEOR for captions (starts a JVM: slow).
        caption_tokenizer: caption metric tokenizer: ``auto`` (PTB when Java is available),
            ``ptb`` or ``simple`` (pure Python).
        decoding: how captions/transcripts/answers are generated.
        batch_size: batch size of the evaluation loaders (None: the task's ``data.batch_size``).
        seed: seed of the random masking of ``mlm``/``masked_modeling`` losses.
        plots: write PNG plots.
        examples: samples shown in each task's prediction grid.
        drop_modalities: modalities removed from every batch before the model sees it (a
            missing-modality robustness test; tasks keep the inputs they still have).
    """

    max_samples: int | None = None
    candidates: int = 500
    meteor: bool = False
    caption_tokenizer: str = "auto"
    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    batch_size: int | None = None
    seed: int = 0
    plots: bool = True
    examples: int = 8
    drop_modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.max_samples is not None and self.max_samples < 1:
            problems.append(f"max_samples={self.max_samples} must be >= 1 (or None for all)")
        if self.candidates < 2:
            problems.append(f"candidates={self.candidates} must be >= 2 (retrieval needs a pool)")
        if self.caption_tokenizer not in CAPTION_TOKENIZERS:
            problems.append(
                f"caption_tokenizer={self.caption_tokenizer!r}; valid choices: "
                f"{', '.join(CAPTION_TOKENIZERS)}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} must be >= 1")
        unknown = sorted(set(self.drop_modalities) - set(MODALITIES))
        if unknown:
            problems.append(f"drop_modalities={unknown}; valid choices: {', '.join(MODALITIES)}")
        if self.examples < 0:
            problems.append(f"examples={self.examples} must be >= 0")
        if problems:
            raise InferenceError("invalid evaluation options: " + "; ".join(problems))


@dataclass
class Example:
    """One sample shown in a prediction grid.

    Attributes:
        prediction: what the model produced (label, caption, transcript, answer).
        reference: the target.
        picture: ``[H, W, 3]`` image in ``[0, 1]`` or ``[F, T]`` spectrogram; None for text.
        prompt: the text input (e.g. the question), if any.
    """

    prediction: str
    reference: str
    picture: npt.NDArray[np.float32] | None = None
    prompt: str | None = None


@dataclass
class TaskResult:
    """Evaluation of one task.

    Attributes:
        type: the task type.
        samples: samples scored.
        metrics: metric name -> value (None: could not be computed).
        note: why the task was skipped or what was approximated (empty otherwise).
        classes: class names of a classification task.
        confusion: ``[C, C]`` counts (rows: references, columns: predictions).
        examples: samples for the prediction grid (not written to metrics.json).
        clips: ``[N, T, 3, H, W]`` generated clips in ``[0, 1]`` for the frame plot.
        prompts: the texts the clips were generated from.
    """

    type: str
    samples: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)
    note: str = ""
    classes: list[str] | None = None
    confusion: list[list[int]] | None = None
    examples: list[Example] = field(default_factory=list)
    clips: Tensor | None = None
    prompts: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready part (metrics, counts, classes, confusion matrix)."""
        out: dict[str, Any] = {
            "type": self.type,
            "samples": self.samples,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
        }
        if self.note:
            out["note"] = self.note
        if self.classes is not None:
            out["classes"] = self.classes
        if self.confusion is not None:
            out["confusion_matrix"] = self.confusion
        return out


def finite_or_none(value: float | None) -> float | None:
    """``value`` if finite, else None (JSON has no NaN/inf)."""
    return value if value is not None and math.isfinite(value) else None
