"""VQA answer normalisation, exact-match and soft accuracy."""

from __future__ import annotations

import pytest

from omnifuse.metrics import normalize_answer, vqa_metrics
from omnifuse.metrics.vqa import soft_vqa_score


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two.", "2"),
        ("a dog", "dog"),
        ("  The  Three cats! ", "3 cats"),
        ("1,000", "1000"),
        ("2.5", "2.5"),
        ("Don't", "dont"),
        ("none", "0"),
        ("yes/no", "yes no"),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_per_type_exact_match() -> None:
    result = vqa_metrics(
        ["yes", "Two", "a red car", "no"],
        ["Yes.", "2", "blue car", "yes"],
        question_types=["yes/no", "number", "other", "yes/no"],
    )
    assert result.accuracy == pytest.approx(0.5, abs=1e-9)
    assert result.per_type_accuracy == pytest.approx(
        {"number": 1.0, "other": 0.0, "yes/no": 0.5}, abs=1e-9
    )
    assert result.soft_accuracy is None
    assert result.scalars()["accuracy/number"] == 1.0


def test_soft_accuracy_with_human_answers() -> None:
    refs = [["yes"] * 2 + ["no"] * 8, ["two"] * 4 + ["3"] * 6]
    result = vqa_metrics(["yes", "2"], refs, question_types=["yes/no", "number"])
    assert result.soft_accuracy == pytest.approx((2 / 3 + 1.0) / 2, abs=1e-9)
    assert result.accuracy == 0.0  # neither prediction is the majority answer
    assert result.per_type_soft_accuracy == pytest.approx(
        {"number": 1.0, "yes/no": 2 / 3}, abs=1e-9
    )
    # official leave-one-out: 2 matching humans score 1/3, 8 others 2/3 -> 0.6
    official = vqa_metrics(["yes", "2"], refs, leave_one_out=True)
    assert official.soft_accuracy == pytest.approx((0.6 + 1.0) / 2, abs=1e-9)
    assert soft_vqa_score("yes", ["yes"] * 3 + ["no"] * 7, leave_one_out=True) == pytest.approx(
        0.9, abs=1e-9
    )


@pytest.mark.parametrize(
    ("preds", "refs", "kwargs", "match"),
    [
        (["a", "b"], ["a", ["b"]], {}, "mix single answers"),
        (["a"], [[]], {}, r"references\[0\] has no answers"),
        (["a", "b"], ["a", "b"], {"question_types": ["x"]}, "2 predictions but 1 references"),
        (["a"], ["a", "b"], {}, "1 predictions but 2 references"),
    ],
)
def test_bad_input_is_rejected(
    preds: list[str], refs: list[object], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        vqa_metrics(preds, refs, **kwargs)  # type: ignore[arg-type]
