"""Classification metrics on a confusion case computed by hand."""

from __future__ import annotations

import pytest
import torch

from omnifuse.metrics import classification_metrics, confusion_matrix

# refs  0 0 0 1 1 2 / preds 0 0 1 1 2 2
# confusion rows=ref: [[2,1,0],[0,1,1],[0,0,1]]; precision 1, 1/2, 1/2; recall 2/3, 1/2, 1
# F1 = 0.8, 0.5, 2/3 -> macro (0.8 + 0.5 + 2/3) / 3
REFS = [0, 0, 0, 1, 1, 2]
PREDS = [0, 0, 1, 1, 2, 2]
MACRO_F1 = (0.8 + 0.5 + 2 / 3) / 3


def test_hand_computed_confusion_case() -> None:
    result = classification_metrics(PREDS, REFS)
    assert result.accuracy == pytest.approx(4 / 6, abs=1e-6)
    assert result.macro_f1 == pytest.approx(MACRO_F1, abs=1e-6)
    assert result.per_class_accuracy == pytest.approx([2 / 3, 1 / 2, 1.0], abs=1e-6)
    assert result.confusion_matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert confusion_matrix(PREDS, REFS).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_logits_give_the_same_result_as_labels() -> None:
    logits = torch.nn.functional.one_hot(torch.tensor(PREDS), 3).float() * 5 - 1
    from_logits = classification_metrics(logits, torch.tensor(REFS))
    assert from_logits.accuracy == pytest.approx(4 / 6, abs=1e-6)
    assert from_logits.macro_f1 == pytest.approx(MACRO_F1, abs=1e-6)


def test_absent_class_has_no_per_class_accuracy_and_leaves_macro_f1() -> None:
    result = classification_metrics(PREDS, REFS, num_classes=4, class_names=["a", "b", "c", "d"])
    assert result.per_class_accuracy[3] is None
    assert result.macro_f1 == pytest.approx(MACRO_F1, abs=1e-6)
    scalars = result.scalars()
    assert scalars["per_class_accuracy/d"] is None
    assert scalars["per_class_accuracy/a"] == pytest.approx(2 / 3, abs=1e-6)
    assert result.confusion_matrix.shape == (4, 4)


def test_accuracy_is_the_exact_fraction_of_the_counts() -> None:
    # 475 of 500 right: float32 (torchmetrics) would give 0.94999999, below a 0.95 target.
    refs = torch.arange(500) % 3
    preds = refs.clone()
    preds[:25] = (preds[:25] + 1) % 3
    result = classification_metrics(preds, refs)
    assert result.accuracy == 475 / 500
    assert result.accuracy >= 0.95
    assert result.per_class_accuracy[0] == (167 - 9) / 167  # class 0: rows 0, 3, ..., 24 wrong


@pytest.mark.parametrize(
    ("preds", "refs", "kwargs", "match"),
    [
        (
            [0, 1, 5],
            [0, 1, 2],
            {"num_classes": 3},
            r"predictions contains label 5, outside .*0\.\.2",
        ),
        ([0, 1, 2], [0, 1], {}, "3 predictions but 2 references"),
        ([0.5, 1.0], [0, 1], {}, "integer class labels"),
        (torch.zeros(2, 3), [0, 1], {"num_classes": 4}, "logits have 3 classes but num_classes=4"),
        ([0, 1], [0, 1], {"class_names": ["x"]}, "got 1 class_names for 2 classes"),
    ],
)
def test_bad_input_is_rejected(
    preds: object, refs: object, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(preds, refs, **kwargs)  # type: ignore[arg-type]
