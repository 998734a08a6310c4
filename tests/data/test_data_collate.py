"""Collate: ``present`` masks for partly missing modalities, target encoding by card type."""

from __future__ import annotations

import math

import pytest
import torch
from data_helpers import CharProcessor

from omnifuse.data.card import DatasetCard, FieldSpec
from omnifuse.data.collate import (
    LoadedSample,
    TargetField,
    collate_samples,
    target_fields,
)
from omnifuse.types import IGNORE_INDEX


def _sample(i: int, text: str | None, **targets: object) -> LoadedSample:
    inputs = {} if text is None else {"text": CharProcessor().load(text)}
    return LoadedSample(f"id{i}", inputs, dict(targets))


FIELDS = {
    "label": TargetField("label", "class", ("a", "b")),
    "caption": TargetField("caption", "string"),
    "captions": TargetField("captions", "strings"),
    "score": TargetField("score", "float"),
}


def test_partly_missing_modality_gets_zero_rows_and_present_mask() -> None:
    samples = [_sample(0, "hey"), _sample(1, None), _sample(2, "hello")]
    batch = collate_samples(samples, {"text": CharProcessor()}, {})
    text = batch["inputs"]["text"]
    assert text["present"].tolist() == [True, False, True]
    assert text["input_ids"].shape == (3, 5)
    assert text["input_ids"][1].eq(0).all() and not text["attention_mask"][1].any()
    assert text["attention_mask"].sum(1).tolist() == [3, 0, 5]
    assert batch["ids"] == ["id0", "id1", "id2"]


def test_fully_present_has_no_mask_and_fully_missing_is_absent() -> None:
    processors = {"text": CharProcessor()}
    assert set(collate_samples([_sample(0, "a")], processors, {})["inputs"]["text"]) == {
        "input_ids",
        "attention_mask",
    }
    assert collate_samples([_sample(0, None)], processors, {})["inputs"] == {}


def test_targets_are_encoded_by_type_with_missing_markers() -> None:
    raw = [
        {"label": "b", "caption": "x", "captions": ["p", "q"], "score": 0.5},
        {"label": None, "caption": None, "captions": None, "score": None},
    ]
    samples = [
        LoadedSample(f"id{i}", {}, {n: f.encode(r[n], "src") for n, f in FIELDS.items()})
        for i, r in enumerate(raw)
    ]
    targets = collate_samples(samples, {}, FIELDS)["targets"]
    assert targets["label"].tolist() == [1, IGNORE_INDEX]
    assert targets["label"].dtype == torch.long
    assert targets["caption"] == ["x", None]
    assert targets["captions"] == [["p", "q"], None]
    assert targets["score"][0].item() == 0.5 and math.isnan(targets["score"][1].item())


def test_target_fields_from_card() -> None:
    card = DatasetCard(
        name="d",
        fields={
            "image": FieldSpec(type="image"),
            "label": FieldSpec(type="class", classes=["x", "y"]),
            "answer": FieldSpec(type="string"),
            "group": FieldSpec(type="class"),
        },
    )
    assert list(target_fields(card, ["label", "answer"])) == ["label", "answer"]
    assert target_fields(card, ["label"])["label"].classes == ("x", "y")
    with pytest.raises(ValueError, match=r"'image' is not a target field .* label, answer, group"):
        target_fields(card, ["image"])
    with pytest.raises(ValueError, match=r"'group' .* class field without classes"):
        target_fields(card)


def test_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="empty list of samples"):
        collate_samples([], {}, {})
