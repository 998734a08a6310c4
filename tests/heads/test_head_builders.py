"""MLM and reconstruction heads, and head builders that read the build context."""

from __future__ import annotations

import pytest
import torch

from omnifuse.config import ConfigError, load_config
from omnifuse.heads import CaptionDecoder, MLMHead, ReconstructionHead
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextProcessor
from omnifuse.models import build_model
from omnifuse.registry import list_heads


def features(batch: int, length: int, dim: int) -> EncoderOutput:
    tokens = torch.randn(batch, length, dim)
    return EncoderOutput(tokens, torch.ones(batch, length, dtype=torch.bool), tokens.mean(1))


def test_new_head_types_are_registered() -> None:
    assert {"mlm", "reconstruction", "caption_decoder"} <= set(list_heads())


def test_heads_get_vocabulary_and_widths_from_the_model() -> None:
    heads = [
        "model.heads.mlm={type: mlm}",
        "model.heads.img={type: reconstruction, source: image}",
        "model.heads.aud={type: reconstruction, source: audio}",
        "model.heads.cap={type: caption_decoder, dim: 16, num_layers: 1, num_heads: 2}",
    ]
    model, processors = build_model(load_config("tiny", heads).model)
    text = processors["text"]
    assert isinstance(text, TextProcessor)
    vocab = text.tokenizer.vocab_size
    mlm, img, aud, cap = (model.heads[n] for n in ("mlm", "img", "aud", "cap"))
    assert isinstance(mlm, MLMHead) and mlm(features(2, 5, 32)).shape == (2, 5, vocab)
    assert isinstance(img, ReconstructionHead) and img.out_dim == 8 * 8 * 3
    assert isinstance(aud, ReconstructionHead) and aud.out_dim == 4 * 32  # 4 frames x n_mels
    assert img(features(2, 17, 32)).shape == (2, 17, 192)
    assert isinstance(cap, CaptionDecoder)
    assert cap.bos_id == text.tokenizer.bos_id and cap.eos_id == text.tokenizer.eos_id
    assert cap.lm_head.out_features == vocab


def test_reconstruction_of_an_unsupported_encoder_is_an_error() -> None:
    config = load_config("tiny", ["model.heads.v={type: reconstruction, source: video}"]).model
    with pytest.raises(ValueError, match=r"source='video' \(tubelet_vit\); valid choices: 'image'"):
        build_model(config)


def test_text_heads_need_a_text_encoder() -> None:
    config = load_config(
        "tiny", ["model.encoders.text=null", "model.heads.m={type: mlm, source: fused}"]
    ).model
    with pytest.raises(ValueError, match=r"'mlm' head .* configure model\.encoders\.text"):
        build_model(config)


def test_head_source_must_be_configured() -> None:
    with pytest.raises(ConfigError, match=r"heads\.m\.source='text' is not a configured encoder"):
        load_config("tiny", ["model.encoders.text=null", "model.heads.m={type: mlm}"])


def test_classification_head_mean_pooling_reads_the_valid_tokens_not_pooled() -> None:
    from omnifuse.config.heads import ClassificationHeadConfig
    from omnifuse.heads.basic import build_classification

    torch.manual_seed(0)
    config = ClassificationHeadConfig(num_classes=3, pooling="mean")
    head = build_classification(config, in_dim=4)
    tokens = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    features = EncoderOutput(tokens=tokens, mask=mask, pooled=torch.zeros(2, 4))
    expected = head.net(torch.stack([tokens[0, :2].mean(0), tokens[1].mean(0)]))
    torch.testing.assert_close(head(features), expected)
    # Padding does not matter; the pooled vector is not read.
    padded = EncoderOutput(tokens.clone(), mask, pooled=torch.ones(2, 4))
    padded.tokens[0, 2:] = 100.0
    torch.testing.assert_close(head(padded), expected)
    default = build_classification(ClassificationHeadConfig(num_classes=3), in_dim=4)
    torch.testing.assert_close(default(features), default.net(features.pooled))


def test_classification_head_attention_pooling_weighs_only_valid_tokens() -> None:
    from omnifuse.config.heads import ClassificationHeadConfig
    from omnifuse.heads.basic import build_classification

    torch.manual_seed(0)
    head = build_classification(ClassificationHeadConfig(num_classes=3, pooling="attention"), 8)
    tokens = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    out = head(EncoderOutput(tokens=tokens, mask=mask, pooled=torch.zeros(2, 8)))
    assert out.shape == (2, 3)
    # Padding and the pooled vector are not read.
    changed = tokens.clone()
    changed[0, 2:] = 100.0
    again = head(EncoderOutput(tokens=changed, mask=mask, pooled=torch.ones(2, 8)))
    torch.testing.assert_close(again, out)
    # One distinct valid token: any attention weights give its value projection.
    pool = head.pool
    assert pool is not None
    same = tokens[:, :1].expand(2, 5, 8)
    value = pool.kv(pool.norm(same[:, 0]))[:, 8:]
    expected = head.net(pool.out(value))
    torch.testing.assert_close(head(EncoderOutput(same, None, torch.zeros(2, 8))), expected)
    # The query learns: it gets a gradient.
    out.sum().backward()
    assert pool.query.grad is not None and pool.query.grad.abs().sum() > 0


def test_token_classification_head_classifies_every_token_alike() -> None:
    from omnifuse.config.heads import TokenClassificationHeadConfig
    from omnifuse.heads.basic import build_token_classification

    head = build_token_classification(TokenClassificationHeadConfig(num_classes=3), in_dim=4)
    tokens = torch.randn(2, 5, 4)
    out = head(EncoderOutput(tokens, torch.ones(2, 5, dtype=torch.bool), tokens[:, 0]))
    assert out.shape == (2, 5, 3)
    # the same classifier at each position: a token's logits depend on that token alone
    swapped = tokens.flip(1)
    again = head(EncoderOutput(swapped, torch.ones(2, 5, dtype=torch.bool), swapped[:, 0]))
    torch.testing.assert_close(again, out.flip(1))
