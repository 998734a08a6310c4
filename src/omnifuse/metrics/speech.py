"""Speech recognition metrics: corpus WER and CER with edit counts, computed by jiwer.

Normalisation (applied identically to references and hypotheses, before scoring):
lowercase -> remove punctuation (Unicode category P, so "don't" -> "dont") -> collapse runs of
whitespace into one space -> strip. Pass ``normalize=False`` to score the raw strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jiwer

from omnifuse.metrics._common import check_same_length, check_strings

# jiwer's RemovePunctuation.__init__ is unannotated; the call itself is plain.
_REMOVE_PUNCTUATION = jiwer.RemovePunctuation()  # type: ignore[no-untyped-call]
_CLEAN: list[jiwer.AbstractTransform] = [jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
_NORMALIZE_STEPS: list[jiwer.AbstractTransform] = [
    jiwer.ToLowerCase(),
    _REMOVE_PUNCTUATION,
    *_CLEAN,
]
_NORMALIZE = jiwer.Compose(_NORMALIZE_STEPS)
_WORDS = jiwer.Compose([*_NORMALIZE_STEPS, jiwer.ReduceToListOfListOfWords()])
_CHARS = jiwer.Compose([*_NORMALIZE_STEPS, jiwer.ReduceToListOfListOfChars()])
_RAW_WORDS = jiwer.Compose([*_CLEAN, jiwer.ReduceToListOfListOfWords()])
_RAW_CHARS = jiwer.Compose([*_CLEAN, jiwer.ReduceToListOfListOfChars()])


@dataclass(frozen=True)
class SpeechResult:
    """Corpus-level ASR metrics (errors summed over all utterances, then divided).

    Attributes:
        wer: (substitutions + deletions + insertions) / reference words.
        cer: The same ratio over characters (spaces between words count as characters).
        substitutions: Word substitutions.
        deletions: Reference words missing from the hypotheses.
        insertions: Hypothesis words absent from the references.
        hits: Correctly recognised words.
        reference_words: Number of reference words after normalisation.
    """

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    reference_words: int

    def scalars(self) -> dict[str, float | None]:
        """Flat ``{name: value}`` view of every field."""
        return {key: value for key, value in asdict(self).items()}


def normalize_transcript(text: str) -> str:
    """Applies the normalisation used by :func:`speech_metrics` (see the module docstring)."""
    return str(_NORMALIZE(text))


def speech_metrics(
    predictions: Sequence[str], references: Sequence[str], normalize: bool = True
) -> SpeechResult:
    """Word and character error rates with edit counts.

    Args:
        predictions: One hypothesis transcript per utterance.
        references: One reference transcript per utterance.
        normalize: Apply the module's normalisation to both sides (default) or score raw text
            (whitespace is still collapsed so that words can be split).

    Returns:
        The metrics. An empty hypothesis is allowed (all its reference words are deletions);
        an empty reference counts all its hypothesis words as insertions.
    """
    hyps = check_strings(predictions, "predictions")
    refs = check_strings(references, "references")
    check_same_length(hyps, refs)
    words, chars = (_WORDS, _CHARS) if normalize else (_RAW_WORDS, _RAW_CHARS)
    word_out = jiwer.process_words(
        refs, hyps, reference_transform=words, hypothesis_transform=words
    )
    reference_words = word_out.hits + word_out.substitutions + word_out.deletions
    if reference_words == 0:
        # jiwer returns a number here, but an error rate over zero reference words is undefined.
        raise ValueError("all references are empty after normalisation; WER is undefined")
    char_out = jiwer.process_characters(
        refs, hyps, reference_transform=chars, hypothesis_transform=chars
    )
    return SpeechResult(
        wer=float(word_out.wer),
        cer=float(char_out.cer),
        substitutions=word_out.substitutions,
        deletions=word_out.deletions,
        insertions=word_out.insertions,
        hits=word_out.hits,
        reference_words=reference_words,
    )
