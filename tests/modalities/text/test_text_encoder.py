"""Native TextTransformer: shapes, padding invariance, gradients, determinism, registry build."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from omnifuse.config.text import TextTransformerConfig
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextTransformer
from omnifuse.modalities.text.processor import TextProcessor
from omnifuse.registry import encoder_spec

TEXTS = ["a red circle", "the blue square moves to the left, slowly"]


def build(**fields: Any) -> tuple[TextTransformer, TextProcessor]:
    config = TextTransformerConfig(dim=32, num_layers=2, num_heads=4, **fields)
    spec = encoder_spec("text", "transformer")
    processor = spec.build_processor(config)
    encoder = spec.build_encoder(config, processor, True)
    assert isinstance(encoder, TextTransformer) and isinstance(processor, TextProcessor)
    return encoder, processor


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_shapes_and_finite(norm_first: bool, pooling: str) -> None:
    encoder, processor = build(norm_first=norm_first, pooling=pooling)
    batch = processor(TEXTS)
    out = encoder.eval()(batch)
    b, length = batch["input_ids"].shape
    assert out.tokens.shape == (b, length, 32) and out.pooled.shape == (b, 32)
    assert torch.equal(out.mask, batch["attention_mask"])
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    if pooling == "cls":
        torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    # Post-norm (BERT) ends without a final norm; pre-norm gets one.
    assert isinstance(encoder.transformer.norm, torch.nn.LayerNorm) == norm_first


@pytest.mark.parametrize("norm_first", [True, False])
def test_padding_does_not_change_valid_positions(norm_first: bool) -> None:
    encoder, processor = build(norm_first=norm_first, type_vocab_size=2)
    encoder.eval()
    short = processor(TEXTS[:1])
    padded = processor(TEXTS)  # TEXTS[0] is padded up to the longer text
    assert not padded["attention_mask"][0].all()
    alone, batched = encoder(short), encoder(padded)
    n = short["input_ids"].shape[1]
    torch.testing.assert_close(batched.tokens[0, :n], alone.tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-5)


def test_every_parameter_gets_a_gradient() -> None:
    encoder, processor = build(type_vocab_size=2, dropout=0.1)
    out = encoder.train()(processor(TEXTS))
    (out.tokens.pow(2).mean() + out.pooled.pow(2).mean()).backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_same_seed_same_model_and_output() -> None:
    torch.manual_seed(3)
    first, processor = build()
    torch.manual_seed(3)
    second, _ = build()
    batch = processor(TEXTS)
    torch.testing.assert_close(first.eval()(batch).tokens, second.eval()(batch).tokens)
    torch.manual_seed(4)
    third, _ = build()
    assert not torch.allclose(third.eval()(batch).tokens, first(batch).tokens)


def test_gradient_checkpointing_keeps_outputs() -> None:
    encoder, processor = build()
    batch = processor(TEXTS)
    encoder.train()
    reference = encoder(batch).pooled
    encoder.set_gradient_checkpointing(True)
    assert encoder.transformer.gradient_checkpointing
    checkpointed = encoder(batch).pooled
    torch.testing.assert_close(checkpointed, reference)
    checkpointed.sum().backward()
    assert encoder.embeddings.token.weight.grad is not None


def test_ignores_unknown_keys_and_missing_mask() -> None:
    encoder, processor = build()
    encoder.eval()
    batch = processor(TEXTS[:1])  # no padding: an all-true mask
    extra: dict[str, torch.Tensor] = {**batch, "present": torch.ones(1, dtype=torch.bool)}
    reference = encoder(batch)
    torch.testing.assert_close(encoder(extra).pooled, reference.pooled)
    only_ids = encoder({"input_ids": batch["input_ids"]})
    torch.testing.assert_close(only_ids.pooled, reference.pooled)


def test_token_type_ids_are_used() -> None:
    encoder, processor = build(type_vocab_size=2)
    encoder.eval()
    batch = processor(TEXTS)
    types = torch.ones_like(batch["input_ids"])
    assert isinstance(encoder(batch), EncoderOutput)
    assert not torch.allclose(
        encoder({**batch, "token_type_ids": types}).pooled, encoder(batch).pooled
    )


def test_errors() -> None:
    encoder, _ = build(max_positions=16, tokenizer={"type": "byte", "max_length": 16})
    with pytest.raises(KeyError, match="needs 'input_ids'"):
        encoder({"attention_mask": torch.ones(1, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="20 tokens exceeds max_positions=16"):
        encoder({"input_ids": torch.zeros(1, 20, dtype=torch.long)})
    with pytest.raises(ValueError, match="pooling='max'; valid choices: cls, mean"):
        TextTransformer(10, pooling="max")  # type: ignore[arg-type]


def test_vocab_follows_the_tokenizer() -> None:
    encoder, processor = build()
    assert encoder.embeddings.token.num_embeddings == processor.tokenizer.vocab_size == 263
