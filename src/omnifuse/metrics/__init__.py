"""Evaluation metrics for the six downstream task families.

``compute_metrics(kind, predictions, references, **options)`` is the uniform entry point; each
family module also exposes a structured result type. Metrics take plain lists, numpy arrays or
tensors and never import models, training or the CLI. See docs/metrics.md.
"""

from omnifuse.metrics.captioning import CaptionResult, caption_metrics
from omnifuse.metrics.classification import (
    ClassificationResult,
    classification_metrics,
    confusion_matrix,
)
from omnifuse.metrics.dispatch import compute_metrics, list_metric_kinds, metric_options
from omnifuse.metrics.retrieval import (
    ImageTextRetrievalResult,
    RetrievalResult,
    image_text_retrieval,
    rerank_top_k,
    retrieval_metrics,
)
from omnifuse.metrics.speech import SpeechResult, normalize_transcript, speech_metrics
from omnifuse.metrics.video import (
    VideoResult,
    attribute_accuracy,
    frechet_distance,
    video_metrics,
)
from omnifuse.metrics.vqa import VQAResult, normalize_answer, vqa_metrics

__all__ = [
    "CaptionResult",
    "ClassificationResult",
    "ImageTextRetrievalResult",
    "RetrievalResult",
    "SpeechResult",
    "VQAResult",
    "VideoResult",
    "attribute_accuracy",
    "caption_metrics",
    "classification_metrics",
    "compute_metrics",
    "confusion_matrix",
    "frechet_distance",
    "image_text_retrieval",
    "list_metric_kinds",
    "metric_options",
    "normalize_answer",
    "normalize_transcript",
    "rerank_top_k",
    "retrieval_metrics",
    "speech_metrics",
    "video_metrics",
    "vqa_metrics",
]
