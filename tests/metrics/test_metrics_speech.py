"""WER / CER with known edit counts and the shared normalisation."""

from __future__ import annotations

import pytest

from omnifuse.metrics import normalize_transcript, speech_metrics


def test_known_edit_counts() -> None:
    # 1: "sat"->"sit" (substitution) and "the" missing (deletion); 2: "big" inserted.
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the cat sit on mat", "hello big world"]
    result = speech_metrics(hyps, refs)
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 1)
    assert result.hits == 6  # 4 + 2
    assert result.reference_words == 8
    assert result.wer == pytest.approx(3 / 8, abs=1e-9)
    # characters: a->i (1) + "the " deleted (4) + "big " inserted (4) over 22 + 11 reference chars
    assert result.cer == pytest.approx(9 / 33, abs=1e-9)


def test_normalisation_is_applied_to_both_sides() -> None:
    assert normalize_transcript("  Don't   STOP, now! ") == "dont stop now"
    assert speech_metrics(["hello   world"], ["Hello, World!"]).wer == 0.0
    raw = speech_metrics(["hello   world"], ["Hello, World!"], normalize=False)
    assert raw.substitutions == 2
    assert raw.wer == pytest.approx(1.0, abs=1e-9)


def test_empty_hypothesis_counts_deletions() -> None:
    result = speech_metrics(["", "a b"], ["x y z", "a b"])
    assert result.deletions == 3
    assert result.wer == pytest.approx(3 / 5, abs=1e-9)


@pytest.mark.parametrize(
    ("hyps", "refs", "match"),
    [
        (["a"], ["", "b"], "1 predictions but 2 references"),
        (["a"], ["!!"], "WER is undefined"),
        ([3], ["a"], r"predictions\[0\] must be a str"),
        ("a b", ["a b"], "a single string"),
    ],
)
def test_bad_input_is_rejected(hyps: object, refs: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        speech_metrics(hyps, refs)  # type: ignore[arg-type]
