"""Text modality: tokenizers, :class:`TextProcessor`, the native :class:`TextTransformer` and the
Hugging Face :class:`TextHFEncoder` adapter.

Importing this package registers the encoder types ``("text", "transformer")`` and
``("text", "hf")``.
"""

from omnifuse.modalities.text.adapters import HFTextProcessor, TextHFEncoder
from omnifuse.modalities.text.encoder import TextEmbeddings, TextTransformer
from omnifuse.modalities.text.processor import TextProcessor
from omnifuse.modalities.text.tokenizer import (
    SPECIAL_TOKENS,
    NativeTokenizer,
    PretrainedTokenizer,
    TextTokenizer,
    byte_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "SPECIAL_TOKENS",
    "HFTextProcessor",
    "NativeTokenizer",
    "PretrainedTokenizer",
    "TextEmbeddings",
    "TextHFEncoder",
    "TextProcessor",
    "TextTokenizer",
    "TextTransformer",
    "byte_tokenizer",
    "load_tokenizer",
    "train_tokenizer",
]
