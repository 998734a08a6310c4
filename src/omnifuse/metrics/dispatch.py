"""One entry point for every task family: ``compute_metrics(kind, predictions, references)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

from omnifuse.metrics.captioning import caption_metrics
from omnifuse.metrics.classification import classification_metrics
from omnifuse.metrics.retrieval import image_text_retrieval
from omnifuse.metrics.speech import speech_metrics
from omnifuse.metrics.video import video_metrics
from omnifuse.metrics.vqa import vqa_metrics


class MetricResult(Protocol):
    """What every family returns: a structured result with a flat scalar view."""

    def scalars(self) -> dict[str, float | None]: ...


_FAMILIES: dict[str, Callable[..., MetricResult]] = {
    "classification": classification_metrics,
    "speech": speech_metrics,
    "captioning": caption_metrics,
    "retrieval": image_text_retrieval,
    "vqa": vqa_metrics,
    "video": video_metrics,
}


def list_metric_kinds() -> list[str]:
    """Task kinds accepted by :func:`compute_metrics`, sorted."""
    return sorted(_FAMILIES)


def metric_options(kind: str) -> list[str]:
    """Keyword options a kind accepts (beyond predictions and references)."""
    parameters = list(inspect.signature(_family(kind)).parameters)
    return parameters[2:]


def _family(kind: str) -> Callable[..., MetricResult]:
    if kind not in _FAMILIES:
        raise ValueError(f"unknown metric kind {kind!r}; valid kinds: {list_metric_kinds()}")
    return _FAMILIES[kind]


def compute_metrics(
    kind: str, predictions: Any, references: Any, **options: Any
) -> dict[str, float | None]:
    """Computes the metrics of one task family and returns them flat.

    Args:
        kind: One of :func:`list_metric_kinds`.
        predictions: Model outputs (labels/logits, transcripts, captions, similarity matrix
            [N_images, N_texts], answers, or clips, by kind).
        references: Matching references (labels, transcripts, per-image caption lists,
            per-image positive text indices, answers or answer lists, or clips).
        **options: Keyword options of the family function (see :func:`metric_options`).

    Returns:
        ``{metric name: value}``; ``None`` marks a metric that could not be computed (e.g.
        METEOR without Java). Slashes group sub-metrics, e.g. ``"i2t/recall@1"``.
    """
    family = _family(kind)
    valid = metric_options(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for kind {kind!r}; valid options: {valid}")
    return family(predictions, references, **options).scalars()
