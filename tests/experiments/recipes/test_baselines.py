"""Baselines of the recipes on tiny data: TF-IDF, logistic regression, pocketsphinx WER."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from omnifuse.datasets import tts
from omnifuse_experiments.recipes.baselines import (
    TfidfVectorizer,
    fit_logistic_regression,
    pocketsphinx_transcribe,
    select_logistic_regression,
    word_error_rate,
)

CATS = "the cat purrs and chases mice; whiskers, fur and a long tail"
MARKETS = "stocks and bonds fell as the market priced higher interest rates"


def test_tfidf_matches_the_scikit_learn_formula() -> None:
    vectorizer = TfidfVectorizer(ngram_range=(1, 1), min_df=1).fit(["apple banana", "apple cherry"])
    assert list(vectorizer.vocabulary) == ["apple", "banana", "cherry"]
    # idf(apple) = ln(3/3) + 1 = 1, idf(banana) = ln(3/2) + 1; the row is then L2-normalised.
    row = vectorizer.transform(["apple banana banana", "durian"])
    banana = (1 + math.log(2)) * (math.log(1.5) + 1)
    norm = math.hypot(1.0, banana)
    torch.testing.assert_close(row[0], torch.tensor([1 / norm, banana / norm, 0.0]))
    assert row[1].abs().sum() == 0  # no known word: an all-zero row, not NaN


def test_tfidf_bigrams_and_min_df() -> None:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(
        ["red apple pie", "red apple tart", "green pear"]
    )
    assert set(vectorizer.vocabulary) == {"red", "apple", "red apple"}


def _texts(seed: int, count: int) -> tuple[list[str], torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count)
    sources = [CATS.split(), MARKETS.split()]
    texts = [" ".join(rng.choice(sources[y], size=6)) for y in labels]
    return texts, torch.tensor(labels)


def test_tfidf_logistic_regression_separates_two_topics() -> None:
    train_texts, train_y = _texts(0, 40)
    test_texts, test_y = _texts(1, 40)
    vectorizer = TfidfVectorizer().fit(train_texts)
    model = fit_logistic_regression(vectorizer.transform(train_texts), train_y, 2, l2=1e-3)
    assert model.accuracy(vectorizer.transform(test_texts), test_y) == 1.0


def test_logistic_regression_on_noise_is_near_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2400, 16, generator=generator)
    y = torch.randint(0, 2, (2400,), generator=generator)
    model = fit_logistic_regression(x[:400], y[:400], 2, l2=1e-2)
    assert model.accuracy(x[:400], y[:400]) > 0.5  # it does fit its training noise a little
    assert 0.45 < model.accuracy(x[400:], y[400:]) < 0.55


def test_selection_keeps_the_strength_best_on_validation() -> None:
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(8, generator=generator)
    x = torch.randn(300, 8, generator=generator)
    y = (x @ direction > 0).long()
    model = select_logistic_regression((x[:200], y[:200]), (x[200:], y[200:]), 2, grid=(10.0, 1e-4))
    # A strength of 10 shrinks the weights to almost nothing; 1e-4 fits the rule.
    assert model.l2 == 1e-4
    assert model.accuracy(x[200:], y[200:]) > 0.95


def test_pocketsphinx_transcribes_a_flite_utterance(tmp_path: Path) -> None:
    sentence = "my sister bought three green apples at the market on monday"
    path = tmp_path / "utterance.wav"
    samples = tts.synthesize(sentence, tts.Voice("flite", "rms"))
    soundfile.write(str(path), samples, tts.SAMPLE_RATE, subtype="PCM_16")
    (transcript,) = pocketsphinx_transcribe([path])
    scores = word_error_rate([transcript], [sentence])
    assert transcript.strip(), "pocketsphinx returned nothing"
    assert math.isfinite(scores["wer"]) and scores["wer"] <= 0.34, transcript


def test_word_error_rate_counts_edits() -> None:
    scores = word_error_rate(["the cat sat", "hello"], ["the cat sat down", "Hello!"])
    assert scores["wer"] == pytest.approx(1 / 5)  # one deletion in five reference words
