"""Build-time access to the text tokenizer for heads that predict text tokens."""

from __future__ import annotations

from omnifuse.modalities.text import TextProcessor, TextTokenizer
from omnifuse.registry import HeadContext


def text_tokenizer(context: HeadContext, head_type: str) -> TextTokenizer:
    """The tokenizer of the model's text processor (vocabulary size, special ids).

    Raises:
        ValueError: the model has no text encoder, so there is no vocabulary to predict.
    """
    processor = context.processors.get("text")
    if not isinstance(processor, TextProcessor):
        configured = ", ".join(sorted(context.processors)) or "none"
        raise ValueError(
            f"a {head_type!r} head predicts text tokens and needs the text encoder's tokenizer; "
            f"configure model.encoders.text (configured: {configured})"
        )
    return processor.tokenizer
