"""TextProcessor: ids with [CLS]/[SEP], padding and masks, errors, save -> rebuild identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from omnifuse.config.text import TextTransformerConfig
from omnifuse.modalities.base import MediaError
from omnifuse.modalities.text.processor import TextProcessor, build_text_processor

TEXTS = ["a red circle", "the blue square moves left, slowly!", "green"]


def processor(**tokenizer: Any) -> TextProcessor:
    return build_text_processor(TextTransformerConfig(tokenizer=tokenizer))


def test_load_adds_template_and_truncates() -> None:
    proc = processor(type="byte", max_length=8)
    tok = proc.tokenizer
    assert proc.load("abc") == [tok.cls_id, *tok.encode("abc"), tok.sep_id]
    long = proc.load("a much longer sentence")
    assert len(long) == 8 and long[0] == tok.cls_id and long[-1] == tok.sep_id


def test_collate_pads_with_mask() -> None:
    proc = processor(type="byte")
    batch = proc(TEXTS)
    assert set(batch) == {"input_ids", "attention_mask"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = [len(proc.load(t)) for t in TEXTS]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.shape == mask.shape == (3, max(lengths))
    assert mask.sum(dim=1).tolist() == lengths
    assert (ids[~mask] == proc.tokenizer.pad_id).all()
    assert ids[2, : lengths[2]].tolist() == proc.load(TEXTS[2])


@pytest.mark.parametrize("raw", ["", "   \n", None, 3, b"bytes"])
def test_bad_inputs_raise_media_error(raw: Any) -> None:
    proc = processor(type="byte")
    with pytest.raises(MediaError, match=r"empty text|expected a text string"):
        proc.load(raw)


def test_collate_empty_list() -> None:
    with pytest.raises(ValueError, match="empty list"):
        processor(type="byte").collate([])


def test_max_length_must_fit_positions() -> None:
    with pytest.raises(ValueError, match="max_length=200 exceeds max_positions=128"):
        TextTransformerConfig(tokenizer={"type": "byte", "max_length": 200})


def _rebuilt(config: TextTransformerConfig, saved: dict[str, Any]) -> TextProcessor:
    data = config.model_dump()
    data["tokenizer"].update(saved.get("tokenizer", {}))
    return build_text_processor(TextTransformerConfig.model_validate(data))


@pytest.mark.parametrize("type_", ["bpe", "wordpiece"])
def test_save_then_rebuild_gives_identical_ids(tmp_path: Path, type_: str) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 10))
    config = TextTransformerConfig(
        tokenizer={"type": type_, "vocab_size": 80, "corpus": [corpus], "lowercase": False}
    )
    proc = build_text_processor(config)
    saved = proc.save(tmp_path / "saved")
    assert Path(saved["tokenizer"]["path"]).is_file() and saved["tokenizer"]["corpus"] == []
    corpus.unlink()  # the saved tokenizer must not need the corpus any more
    rebuilt = _rebuilt(config, saved)
    probe = [*TEXTS, "Unseen WORDS 123"]
    assert torch.equal(rebuilt(probe)["input_ids"], proc(probe)["input_ids"])
    assert rebuilt.tokenizer.vocab_size == proc.tokenizer.vocab_size


def test_byte_tokenizer_saves_nothing(tmp_path: Path) -> None:
    # The config alone rebuilds it, so a saved model's config stays unchanged.
    proc = processor(type="byte", lowercase=False)
    assert proc.save(tmp_path / "saved") == {}
    assert not (tmp_path / "saved").exists()
    rebuilt = processor(type="byte", lowercase=False)
    assert torch.equal(rebuilt(TEXTS)["input_ids"], proc(TEXTS)["input_ids"])


def test_byte_tokenizer_from_saved_file(tmp_path: Path) -> None:
    from omnifuse.modalities.text import byte_tokenizer

    path = tmp_path / "tokenizer.json"
    byte_tokenizer(lowercase=True).save(str(path))
    proc = processor(type="byte", path=path, lowercase=False)  # the file wins over the flag
    assert proc.tokenizer.decode(proc.tokenizer.encode("ABC")) == "abc"
    assert proc.save(tmp_path / "again")["tokenizer"]["path"].is_file()


def test_pretrained_save_then_rebuild(tmp_path: Path, tiny_hf_bert_dir: Path) -> None:
    config = TextTransformerConfig(tokenizer={"type": "pretrained", "path": tiny_hf_bert_dir})
    proc = build_text_processor(config)
    saved = proc.save(tmp_path / "saved")
    assert (Path(saved["tokenizer"]["path"]) / "tokenizer.json").is_file()
    rebuilt = _rebuilt(config, saved)
    assert torch.equal(rebuilt(TEXTS)["input_ids"], proc(TEXTS)["input_ids"])
