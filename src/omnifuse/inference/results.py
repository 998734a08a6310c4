"""Prediction results: ``TypedDict`` s (typed for mypy, plain JSON for ``omnifuse predict``)
and the helpers that build them from model outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from torch import Tensor

from omnifuse.modalities.text import TextTokenizer


class ClassPrediction(TypedDict):
    """One classified sample.

    Attributes:
        label: the predicted class name, or its index when the class names are unknown.
        score: its probability.
        scores: every class (name or index as a string) -> probability.
    """

    label: str | int
    score: float
    scores: dict[str, float]


class TextPrediction(TypedDict):
    """One generated text (caption, transcript, answer)."""

    text: str


class EmbeddingPrediction(TypedDict):
    """One embedding per sample and modality: modality -> ``[D]`` floats."""

    embeddings: dict[str, list[float]]


class MaskFill(TypedDict):
    """Most likely tokens at one ``[MASK]`` position."""

    position: int
    tokens: list[str]
    scores: list[float]


class FillMaskPrediction(TypedDict):
    """An ``mlm`` prediction: the text with every mask replaced by its top token."""

    text: str
    masks: list[MaskFill]


class ReconstructionPrediction(TypedDict):
    """A ``masked_modeling`` prediction: mean squared error on the hidden patches/frames."""

    reconstruction_mse: float
    masked: int


class VideoPrediction(TypedDict):
    """Files written for one generated clip (one per format)."""

    files: list[str]


def class_prediction(probs: Tensor, names: Sequence[str] | None) -> ClassPrediction:
    """``[C]`` probabilities -> label, score and per-class scores."""
    keys = list(names) if names is not None else [str(i) for i in range(probs.shape[0])]
    best = int(probs.argmax())
    return ClassPrediction(
        label=keys[best] if names is not None else best,
        score=float(probs[best]),
        scores=dict(zip(keys, (float(p) for p in probs), strict=True)),
    )


def fill_row(
    ids: Tensor, logits: Tensor, tokenizer: TextTokenizer, top_k: int
) -> FillMaskPrediction:
    """One text: ``ids [L]`` and ``logits [L, V]`` -> its masks' candidates and filled text."""
    filled = ids.clone()
    masks: list[MaskFill] = []
    for position in (ids == tokenizer.mask_id).nonzero().flatten().tolist():
        probs, tokens = logits[position].softmax(dim=-1).topk(top_k)
        filled[position] = tokens[0]
        masks.append(
            MaskFill(
                position=position,
                tokens=[tokenizer.decode([t]) for t in tokens.tolist()],
                scores=[float(p) for p in probs],
            )
        )
    return FillMaskPrediction(text=tokenizer.decode(filled.tolist()).strip(), masks=masks)
