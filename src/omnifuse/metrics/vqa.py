"""Visual question answering metrics: exact-match and soft VQA accuracy, overall and per type.

Answers are compared after :func:`normalize_answer`, a compact version of the official VQA
evaluation's answer processing (lowercase, punctuation, number words, articles).
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from omnifuse.metrics._common import check_same_length, check_strings

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")
_APOSTROPHE = re.compile(r"['\u2019]")
_NON_DECIMAL_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
_PUNCTUATION = re.compile("[" + re.escape(string.punctuation.replace(".", "")) + "]")


def normalize_answer(answer: str) -> str:
    """VQA-style answer normalisation.

    Steps: lowercase; drop thousands separators ("1,000" -> "1000") and apostrophes ("don't" ->
    "dont", standing in for the official contraction table); other punctuation becomes a space,
    except a period inside a decimal number ("2.5"); number words zero..ten and "none" become
    digits; articles a/an/the are dropped; whitespace is collapsed.

    Returns:
        The normalised answer, e.g. ``"Two."`` -> ``"2"``, ``"a dog"`` -> ``"dog"``.
    """
    text = _APOSTROPHE.sub("", _DIGIT_COMMA.sub("", answer.lower()))
    text = _PUNCTUATION.sub(" ", _NON_DECIMAL_PERIOD.sub(" ", text))
    words = [_NUMBER_WORDS.get(word, word) for word in text.split()]
    return " ".join(word for word in words if word not in _ARTICLES)


def soft_vqa_score(prediction: str, answers: Sequence[str], leave_one_out: bool = False) -> float:
    """Soft VQA accuracy of one prediction against several human answers (after normalisation).

    Args:
        prediction: The model's answer.
        answers: The human answers (VQA v2 has ten).
        leave_one_out: ``False``: ``min(#humans that gave the answer / 3, 1)``. ``True``: the
            official evaluation, which averages that formula over the ten leave-one-human-out
            subsets (three matching humans then score 0.9, not 1).

    Returns:
        Score in [0, 1].
    """
    if len(answers) == 0:
        raise ValueError("soft VQA accuracy needs at least one human answer, got none")
    target = normalize_answer(prediction)
    hits = [normalize_answer(answer) == target for answer in answers]
    matches = sum(hits)
    if not leave_one_out:
        return min(matches / 3.0, 1.0)
    return sum(min((matches - hit) / 3.0, 1.0) for hit in hits) / len(hits)


@dataclass(frozen=True)
class VQAResult:
    """VQA accuracies.

    Attributes:
        accuracy: Exact match with the reference answer (with several human answers: with the
            most frequent normalised one, ties going to the first given).
        soft_accuracy: Mean :func:`soft_vqa_score`; ``None`` when references are single strings.
        per_type_accuracy: ``accuracy`` per question type (empty without question types).
        per_type_soft_accuracy: ``soft_accuracy`` per question type (empty when not computed).
    """

    accuracy: float
    soft_accuracy: float | None
    per_type_accuracy: dict[str, float] = field(default_factory=dict)
    per_type_soft_accuracy: dict[str, float] = field(default_factory=dict)

    def scalars(self) -> dict[str, float | None]:
        """Flat view: ``accuracy``, ``soft_accuracy`` and per type ``accuracy/<type>`` etc."""
        out: dict[str, float | None] = {
            "accuracy": self.accuracy,
            "soft_accuracy": self.soft_accuracy,
        }
        out.update({f"accuracy/{k}": v for k, v in self.per_type_accuracy.items()})
        out.update({f"soft_accuracy/{k}": v for k, v in self.per_type_soft_accuracy.items()})
        return out


def _answer_lists(references: Sequence[str | Sequence[str]]) -> tuple[list[list[str]], bool]:
    """Returns the human answers per question and whether several were given (soft accuracy)."""
    multi = [not isinstance(ref, str) for ref in references]
    if any(multi) and not all(multi):
        raise ValueError(
            "references mix single answers (str) and answer lists; use one form for all questions"
        )
    answers = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    for index, ref_answers in enumerate(answers):
        if len(ref_answers) == 0:
            raise ValueError(f"references[{index}] has no answers")
        check_strings(ref_answers, f"references[{index}]")
    return answers, all(multi)


def _majority(answers: list[str]) -> str:
    return Counter(normalize_answer(answer) for answer in answers).most_common(1)[0][0]


def _mean_by_type(scores: list[float], types: list[str]) -> dict[str, float]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for score, kind in zip(scores, types, strict=True):
        grouped[kind].append(score)
    return {kind: sum(values) / len(values) for kind, values in sorted(grouped.items())}


def vqa_metrics(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    question_types: Sequence[str] | None = None,
    leave_one_out: bool = False,
) -> VQAResult:
    """Exact-match and soft VQA accuracy, overall and per question type.

    Args:
        predictions: One answer per question.
        references: Per question, one reference answer (str) or the list of human answers.
        question_types: Optional type per question (e.g. "yes/no", "number", "other").
        leave_one_out: Soft accuracy variant, see :func:`soft_vqa_score`.

    Returns:
        The metrics.
    """
    preds = check_strings(predictions, "predictions")
    check_same_length(preds, references)
    answers, multi = _answer_lists(references)
    exact = [
        float(normalize_answer(p) == _majority(a)) for p, a in zip(preds, answers, strict=True)
    ]
    soft = [soft_vqa_score(p, a, leave_one_out) for p, a in zip(preds, answers, strict=True)]
    types: list[str] | None = None
    if question_types is not None:
        types = check_strings(question_types, "question_types")
        check_same_length(preds, types)
    return VQAResult(
        accuracy=sum(exact) / len(exact),
        soft_accuracy=sum(soft) / len(soft) if multi else None,
        per_type_accuracy={} if types is None else _mean_by_type(exact, types),
        per_type_soft_accuracy={} if types is None or not multi else _mean_by_type(soft, types),
    )
