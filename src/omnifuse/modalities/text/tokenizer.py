"""Text -> token ids: byte-level, trained BPE/WordPiece (HF ``tokenizers``) or a local HF tokenizer.

Every tokenizer exposes the same small surface (:class:`TextTokenizer`): ``encode``/``decode``,
``encode_for_model`` (adds the special-token template and truncates), the special-token ids that
masked-LM and captioning heads need, and ``save``.

Our own tokenizers use the special tokens :data:`SPECIAL_TOKENS` (ids 0-6, ``[PAD]`` = 0) and the
template ``[CLS] text [SEP]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from omnifuse.config.text import TokenizerConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]")
"""Special tokens of our own tokenizers, in id order."""

TrainableType = Literal["byte", "bpe", "wordpiece"]
_TRAINABLE = ("byte", "bpe", "wordpiece")
_SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")


# --------------------------------------------------------------------------- building / training


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps: list[normalizers.Normalizer] = [normalizers.NFC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def _finish(tokenizer: Tokenizer) -> Tokenizer:
    """Register the special tokens and the ``[CLS] $A [SEP]`` template."""
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def byte_tokenizer(lowercase: bool = False) -> Tokenizer:
    """A tokenizer over the 256 byte values (ids 7..262) plus :data:`SPECIAL_TOKENS` (ids 0..6).

    Needs no training and never produces ``[UNK]``: every UTF-8 string round-trips.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # one printable char per byte value
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *alphabet])}
    # BPE without merges = one id per byte; the regex is off so spaces are ordinary bytes.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.normalizer = _normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return _finish(tokenizer)


def _train_bpe(texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = _normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # Seeding all 256 bytes means no text ever maps to [UNK].
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return _finish(tokenizer)


def _wordpiece_pipeline(lowercase: bool) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _continuation_tokens(texts: Sequence[str], lowercase: bool) -> list[str]:
    """Sorted ``##c`` for every character that occurs inside a word of ``texts``."""
    chars: set[str] = set()
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            chars.update(word[1:])
    return [f"##{c}" for c in sorted(chars)]


def _train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    texts = list(texts)
    tokenizer = _wordpiece_pipeline(lowercase)
    # The WordPiece trainer numbers the "##c" continuation pieces while iterating a Rust HashMap
    # (random order per run), and merges break count ties by id, so the learned vocabulary
    # changes from run to run. Pre-registering every "##c" in sorted order fixes their ids.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *_continuation_tokens(texts, lowercase)],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    # Rebuild so only the real specials stay "special" (the "##c" must stay ordinary pieces).
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    result = _wordpiece_pipeline(lowercase)
    result.model = models.WordPiece(vocab=vocab, unk_token="[UNK]")
    return _finish(result)


def train_tokenizer(
    texts: Iterable[str], type: TrainableType, vocab_size: int, lowercase: bool = True
) -> Tokenizer:
    """Train a tokenizer on ``texts``; the same texts always give the same tokenizer.

    Args:
        texts: training texts (e.g. a dataset's captions).
        type: ``"bpe"`` (byte-level BPE, never ``[UNK]``), ``"wordpiece"`` (BERT-style) or
            ``"byte"`` (fixed 263-token vocabulary; ``texts`` and ``vocab_size`` are unused).
        vocab_size: target vocabulary size including the special tokens.
        lowercase: lowercase text before tokenizing.

    Returns:
        An HF ``tokenizers.Tokenizer`` with :data:`SPECIAL_TOKENS` and the ``[CLS] $A [SEP]``
        template; ``tokenizer.save(path)`` writes the ``tokenizer.json`` that
        ``TokenizerConfig.path`` accepts.
    """
    if type == "byte":
        return byte_tokenizer(lowercase)
    if type == "bpe":
        return _train_bpe(texts, vocab_size, lowercase)
    if type == "wordpiece":
        return _train_wordpiece(texts, vocab_size, lowercase)
    raise ValueError(
        f"cannot train tokenizer type {type!r}; valid choices: {', '.join(_TRAINABLE)}"
    )


def read_corpus(paths: Sequence[Path]) -> list[str]:
    """Non-empty lines of the corpus files (one text per line)."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer.corpus file(s) not found: {', '.join(missing)}")
    texts: list[str] = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        texts.extend(line for line in lines if line.strip())
    return texts


# --------------------------------------------------------------------------- runtime wrappers


class TextTokenizer(ABC):
    """Common interface of our tokenizers and of pretrained HF tokenizers.

    Args:
        specials: id of each special-token role (``pad``, ``unk``, ``cls``, ``sep``, ``mask``,
            ``bos``, ``eos``); None where the tokenizer has no such token.
        source: where the tokenizer came from, for error messages.
    """

    def __init__(self, specials: dict[str, int | None], source: str) -> None:
        self.specials = specials
        self.source = source

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (embedding rows needed), added tokens included."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""

    @abstractmethod
    def encode_for_model(self, text: str, max_length: int) -> list[int]:
        """Ids with the special-token template (``[CLS] ... [SEP]``), at most ``max_length``."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens skipped."""

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write the tokenizer into ``directory``; return ``TokenizerConfig`` field updates."""

    def _special(self, role: str) -> int:
        token_id = self.specials.get(role)
        if token_id is None:
            raise ValueError(f"tokenizer {self.source} has no {role} token")
        return token_id

    @property
    def pad_id(self) -> int:
        return self._special("pad")

    @property
    def unk_id(self) -> int:
        return self._special("unk")

    @property
    def cls_id(self) -> int:
        return self._special("cls")

    @property
    def sep_id(self) -> int:
        return self._special("sep")

    @property
    def mask_id(self) -> int:
        return self._special("mask")

    @property
    def bos_id(self) -> int:
        return self._special("bos")

    @property
    def eos_id(self) -> int:
        return self._special("eos")


class NativeTokenizer(TextTokenizer):
    """Our own ``byte``/``bpe``/``wordpiece`` tokenizer around a ``tokenizers.Tokenizer``.

    Args:
        backend: a tokenizer holding :data:`SPECIAL_TOKENS` (copied, not shared).
        source: where it came from, for error messages.
        persist: whether :meth:`save` must write it; False when the config alone rebuilds it
            (the untrained byte tokenizer), which keeps a saved model's config unchanged.
    """

    def __init__(self, backend: Tokenizer, source: str, persist: bool = True) -> None:
        missing = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
        if missing:
            raise ValueError(
                f"tokenizer {source} lacks the special tokens {', '.join(missing)}; build it "
                "with omnifuse.modalities.text.train_tokenizer"
            )
        specials = {
            r: backend.token_to_id(t) for r, t in zip(_SPECIAL_ROLES, SPECIAL_TOKENS, strict=True)
        }
        super().__init__(specials, source)
        self.persist = persist
        # A private copy: truncation/padding state set elsewhere must not leak into our ids.
        self.backend = Tokenizer.from_str(backend.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def encode_for_model(self, text: str, max_length: int) -> list[int]:
        encoding = self.backend.encode(text, add_special_tokens=False)
        encoding.truncate(max_length - self.backend.num_special_tokens_to_add(False))
        return list(self.backend.post_process(encoding).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=True))

    def save(self, directory: Path) -> dict[str, Any]:
        if not self.persist:
            return {}
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "tokenizer.json"
        self.backend.save(str(path))
        # The corpus is no longer needed (and may not exist where the model is loaded).
        return {"path": path, "corpus": []}


class PretrainedTokenizer(TextTokenizer):
    """A local Hugging Face tokenizer directory, loaded with ``transformers.AutoTokenizer``."""

    def __init__(self, hf: PreTrainedTokenizerBase, source: str) -> None:
        cls_id = hf.cls_token_id if hf.cls_token_id is not None else hf.bos_token_id
        sep_id = hf.sep_token_id if hf.sep_token_id is not None else hf.eos_token_id
        specials: dict[str, int | None] = {
            "pad": hf.pad_token_id,
            "unk": hf.unk_token_id,
            "cls": cls_id,
            "sep": sep_id,
            "mask": hf.mask_token_id,
            # BERT-style vocabularies have no [BOS]/[EOS]: decoders start at [CLS], stop at [SEP].
            "bos": hf.bos_token_id if hf.bos_token_id is not None else cls_id,
            "eos": hf.eos_token_id if hf.eos_token_id is not None else sep_id,
        }
        super().__init__(specials, source)
        self.hf = hf

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode_for_model(self, text: str, max_length: int) -> list[int]:
        # The tokenizer's own template, exactly as the pretrained model saw it in training.
        return list(self.hf(text, truncation=True, max_length=max_length)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.hf.decode(list(ids), skip_special_tokens=True))

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(directory))
        return {"path": directory}


def load_pretrained_tokenizer(path: Path) -> PretrainedTokenizer:
    """A local HF tokenizer directory (never the hub)."""
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    from transformers import AutoTokenizer

    return PretrainedTokenizer(AutoTokenizer.from_pretrained(str(path)), str(path))


def load_tokenizer(config: TokenizerConfig) -> TextTokenizer:
    """Build the tokenizer a :class:`TokenizerConfig` describes (training it when needed)."""
    if config.type == "pretrained":
        if config.path is None:  # unreachable through the validated config; keeps mypy exact
            raise ValueError("tokenizer.type='pretrained' needs tokenizer.path")
        return load_pretrained_tokenizer(config.path)
    if config.path is not None:
        if not config.path.is_file():
            raise FileNotFoundError(f"tokenizer.path file not found: {config.path}")
        return NativeTokenizer(Tokenizer.from_file(str(config.path)), str(config.path))
    if config.type == "byte":
        return NativeTokenizer(byte_tokenizer(config.lowercase), "byte", persist=False)
    texts = read_corpus(config.corpus)
    if not texts:
        raise ValueError(f"tokenizer.corpus files hold no text: {[str(p) for p in config.corpus]}")
    backend = train_tokenizer(texts, config.type, config.vocab_size, config.lowercase)
    return NativeTokenizer(backend, f"{config.type} trained on {len(config.corpus)} file(s)")
