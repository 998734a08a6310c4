"""``data.text_field`` chooses which manifest field the text encoder reads (e.g. VQA questions)."""

from __future__ import annotations

from pathlib import Path

from data_helpers import CharProcessor, write_jsonl

from omnifuse.config.data import DataConfig
from omnifuse.data.datamodule import OmnifuseDataModule


def decoded(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids if i != 0)


def first_batch_texts(tmp_path: Path, text_field: str) -> list[str]:
    rows = [
        {"id": "a", "text": "red circle", "question": "what colour?", "answer": "red"},
        {"id": "b", "text": "blue square", "question": "how many?", "answer": "1"},
    ]
    manifest = write_jsonl(tmp_path / "val.jsonl", rows)
    data = DataConfig(val=manifest, batch_size=2, text_field=text_field, fields=["answer"])
    loader = OmnifuseDataModule(data, processors={"text": CharProcessor()}).val_dataloader()
    batch = next(iter(loader))
    assert batch["targets"]["answer"] == ["red", "1"]
    return [decoded(row.tolist()) for row in batch["inputs"]["text"]["input_ids"]]


def test_default_text_field(tmp_path: Path) -> None:
    assert first_batch_texts(tmp_path, "text") == ["red circle", "blue square"]


def test_question_as_text_input(tmp_path: Path) -> None:
    assert first_batch_texts(tmp_path, "question") == ["what colour?", "how many?"]
