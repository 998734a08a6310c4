"""Pretrained CLIP / SigLIP dual encoders from a local directory: logits equal transformers'
(atol 1e-5) through load_hf_dual_encoder, and the processors come from the same directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from omnifuse.models.hf_dual_encoder import FixedLengthTextProcessor, load_hf_dual_encoder

ATOL = 1e-5
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 128,  # >= the tiny BERT WordPiece vocabulary the texts use
    "max_position_embeddings": 16,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 3,  # [SEP]: CLIP pools the first EOS position
}


def save_dual(kind: str, out: Path, tokenizer: Path) -> Any:
    torch.manual_seed(0)
    if kind == "clip":
        config = tf.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)
        model: Any = tf.CLIPModel(config)
        images: Any = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    else:
        model = tf.SiglipModel(tf.SiglipConfig(text_config=TEXT, vision_config=VISION))
        images = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    model.eval().save_pretrained(out)
    images.save_pretrained(out)
    tf.AutoTokenizer.from_pretrained(tokenizer).save_pretrained(out)
    return model


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_logits_match_transformers(
    kind: str, tmp_path: Path, media: dict[str, Any], tiny_hf_bert_dir: Path
) -> None:
    reference = save_dual(kind, tmp_path, tiny_hf_bert_dir)
    model, processors = load_hf_dual_encoder(tmp_path)
    texts = processors["text"](["a red circle", "the blue square moves left"])
    images = processors["image"]([media["png"]("a.png"), media["png"]("b.png", seed=1)])
    if kind == "siglip":
        assert isinstance(processors["text"], FixedLengthTextProcessor)
        assert texts["input_ids"].shape[1] == 16  # padded to the position table
    with torch.no_grad():
        ours = model(texts, images)
        theirs = reference(
            input_ids=texts["input_ids"],
            attention_mask=texts["attention_mask"].long() if kind == "clip" else None,
            pixel_values=images["pixel_values"],
        )
    torch.testing.assert_close(ours.logits_per_image, theirs.logits_per_image, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.text_embeds, theirs.text_embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.image_embeds, theirs.image_embeds, atol=ATOL, rtol=0)


def test_other_model_types_are_refused(tiny_hf_towers: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="not a supported dual-encoder tower"):
        load_hf_dual_encoder(tiny_hf_towers["vit"])
