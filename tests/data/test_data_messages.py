"""The ``messages`` field type: conversations in a manifest, validated line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omnifuse.data.card import infer_type
from omnifuse.data.manifest import ManifestError, check_messages, read_manifest

GOOD = [{"role": "user", "content": "<image>hi"}, {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (GOOD, "", ""),
        ([], "wrong_type", "non-empty list"),
        ([{"role": "bot", "content": "x"}], "bad_role", "'bot'"),
        ([{"role": "user", "content": 3}], "wrong_type", "content must be a string"),
        ([{"role": "user", "content": "x"}], "no_answer", "no assistant message"),
        ([{"role": "user", "content": "x", "name": "y"}], "wrong_type", "role and content"),
    ],
)
def test_check_messages(value: Any, kind: str, text: str) -> None:
    found, message = check_messages(value)
    assert found == kind and text in message


def test_a_manifest_with_messages_validates_by_convention(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    bad = [{"role": "system", "content": "x"}]
    path.write_text(
        json.dumps({"id": "a", "messages": GOOD}) + "\n" + json.dumps({"id": "b", "messages": bad})
    )
    with pytest.raises(ManifestError, match=r"train.jsonl:2: messages: has no assistant"):
        read_manifest(path)
    path.write_text(json.dumps({"id": "a", "messages": GOOD}) + "\n")
    assert read_manifest(path)[0].targets["messages"] == GOOD
    assert infer_type([GOOD]) == "messages"


def test_sharegpt_and_typed_contents_normalise_to_messages() -> None:
    from omnifuse.data.conversations import normalise_messages

    sharegpt = {"conversations": [{"from": "human", "value": "<image>hi"}]}
    sharegpt["conversations"].append({"from": "gpt", "value": "hello"})
    assert normalise_messages(sharegpt) == GOOD
    typed = [{"type": "image"}, {"type": "text", "text": "hi"}]
    trl = {"messages": [{"role": "user", "content": typed}, GOOD[1]]}
    assert normalise_messages(trl) == GOOD
    with pytest.raises(ValueError, match="needs `messages`"):
        normalise_messages({"text": "x"})
