"""Reference methods the recipes compare against: TF-IDF, logistic regression, pocketsphinx.

Logistic regression is a few lines of torch rather than scikit-learn: the problem is convex, so
L-BFGS on the L2-regularised softmax loss reaches the same optimum as sklearn's ``lbfgs`` solver,
and the package keeps one numeric stack (no scipy/joblib install for ~60 lines).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from omnifuse.metrics import compute_metrics

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class LogisticRegression:
    """Multinomial logistic regression ``logits = x @ weight.T + bias``.

    Attributes:
        weight: ``[C, D]``.
        bias: ``[C]``.
        l2: the L2 strength it was fitted with (on the mean loss).
    """

    weight: Tensor
    bias: Tensor
    l2: float

    def logits(self, features: Tensor) -> Tensor:
        """``[N, D]`` features -> ``[N, C]`` logits."""
        return features @ self.weight.T + self.bias

    def accuracy(self, features: Tensor, labels: Tensor) -> float:
        """Fraction of ``labels`` ``[N]`` predicted by argmax."""
        return float((self.logits(features).argmax(-1) == labels).double().mean())


def fit_logistic_regression(
    features: Tensor, labels: Tensor, num_classes: int, l2: float, max_iter: int = 200
) -> LogisticRegression:
    """Minimise ``mean CE + l2/2 * ||W||^2`` (bias unpenalised) with L-BFGS.

    Args:
        features: ``[N, D]`` float.
        labels: ``[N]`` class indices.
        num_classes: C.
        l2: regularisation strength.
        max_iter: L-BFGS iterations.
    """
    x = features.double()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        loss = torch.nn.functional.cross_entropy(logits, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # unannotated in torch
    return LogisticRegression(weight.detach().float(), bias.detach().float(), l2)


def select_logistic_regression(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    num_classes: int,
    grid: Sequence[float] = L2_GRID,
) -> LogisticRegression:
    """Fit one model per L2 strength of ``grid`` on ``train``; keep the best on ``val``
    (``(features, labels)`` pairs). Ties go to the stronger regularisation."""
    best: LogisticRegression | None = None
    best_accuracy = -1.0
    for l2 in sorted(grid, reverse=True):
        model = fit_logistic_regression(train[0], train[1], num_classes, l2)
        accuracy = model.accuracy(*val)
        if accuracy > best_accuracy:
            best, best_accuracy = model, accuracy
    if best is None:
        raise ValueError("grid of L2 strengths is empty")
    return best


def evaluate_classifier(
    model: LogisticRegression, features: Tensor, labels: Tensor, num_classes: int
) -> dict[str, float]:
    """``accuracy`` and ``macro_f1`` on ``[N, D]`` features (the metrics omnifuse reports)."""
    metrics = compute_metrics(
        "classification", model.logits(features), labels, num_classes=num_classes
    )
    return {
        "accuracy": float(metrics["accuracy"] or 0.0),
        "macro_f1": float(metrics["macro_f1"] or 0.0),
    }


class TfidfVectorizer:
    """Word uni+bigram TF-IDF as scikit-learn computes it: sublinear ``1 + log(tf)``, smoothed
    ``idf = ln((1 + n) / (1 + df)) + 1``, rows L2-normalised; n-grams in fewer than
    ``min_df`` training documents are dropped.
    """

    def __init__(self, ngram_range: tuple[int, int] = (1, 2), min_df: int = 2) -> None:
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.vocabulary: dict[str, int] = {}
        self.idf = torch.zeros(0)

    def _ngrams(self, text: str) -> list[str]:
        words = TOKEN_PATTERN.findall(text.lower())
        low, high = self.ngram_range
        return [
            " ".join(words[i : i + n])
            for n in range(low, high + 1)
            for i in range(len(words) - n + 1)
        ]

    def fit(self, texts: Sequence[str]) -> TfidfVectorizer:
        """Learn the vocabulary and IDF weights of ``texts``."""
        df = Counter(gram for text in texts for gram in set(self._ngrams(text)))
        kept = sorted(gram for gram, count in df.items() if count >= self.min_df)
        self.vocabulary = {gram: i for i, gram in enumerate(kept)}
        counts = torch.tensor([df[gram] for gram in kept], dtype=torch.float32)
        self.idf = torch.log((1 + len(texts)) / (1 + counts)) + 1
        return self

    def transform(self, texts: Sequence[str]) -> Tensor:
        """``[N, V]`` dense TF-IDF rows (unit L2 norm; all-zero for texts without known n-grams)."""
        out = torch.zeros(len(texts), len(self.vocabulary))
        for row, text in enumerate(texts):
            grams = Counter(g for g in self._ngrams(text) if g in self.vocabulary)
            for gram, tf in grams.items():
                out[row, self.vocabulary[gram]] = 1 + math.log(tf)
        out *= self.idf
        return torch.nn.functional.normalize(out, dim=-1)


def pocketsphinx_transcribe(paths: Sequence[Path]) -> list[str]:
    """Transcripts of 16 kHz mono WAV files by pocketsphinx with its bundled English acoustic
    model, language model and dictionary."""
    import soundfile
    from pocketsphinx import Decoder  # type: ignore[import-untyped]  # no stubs

    decoder: Decoder | None = None
    texts = []
    for path in paths:
        samples, rate = soundfile.read(str(path), dtype="int16")
        if decoder is None:
            decoder = Decoder(samprate=rate)
        decoder.start_utt()
        decoder.process_raw(np.ascontiguousarray(samples).tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        texts.append("" if hypothesis is None else str(hypothesis.hypstr))
    return texts


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus ``wer`` and ``cer`` (omnifuse's normalisation, the same as ``omnifuse eval``)."""
    metrics = compute_metrics("speech", list(hypotheses), list(references))
    return {"wer": float(metrics["wer"] or 0.0), "cer": float(metrics["cer"] or 0.0)}
