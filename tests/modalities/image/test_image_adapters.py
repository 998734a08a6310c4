"""HF vision towers (CLIP, full CLIP, SigLIP, ViT, DINOv2) through the production config ->
registry path: hidden states equal transformers', processors follow preprocessor_config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from omnifuse.config.model import EncodersConfig
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.modalities.image import HFImageProcessor, ImageHFEncoder
from omnifuse.registry import encoder_spec

ATOL = 1e-5  # float32, same kernels: only the batch-size-dependent summation order differs
VISION = ("clip", "clip_full", "siglip", "vit", "dinov2")


def build(path: Path, pretrained: bool = True, **fields: Any) -> tuple[Encoder, Processor[Any]]:
    config = EncodersConfig.model_validate({"image": {"type": "hf", "path": str(path), **fields}})
    spec = encoder_spec("image", "hf")
    processor = spec.build_processor(config.image)
    return spec.build_encoder(config.image, processor, pretrained), processor


def reference(kind: str, path: Path) -> Any:
    """The tower as transformers itself loads it (its own class, not our loading code)."""
    if kind == "clip_full":
        return tf.CLIPModel.from_pretrained(path).vision_model.eval()
    cls = {
        "clip": tf.CLIPVisionModel,
        "siglip": tf.SiglipVisionModel,
        "vit": tf.ViTModel,
        "dinov2": tf.Dinov2Model,
    }[kind]
    return cls.from_pretrained(path).eval()


@pytest.mark.parametrize("kind", VISION)
def test_hidden_states_match_transformers(kind: str, tiny_hf_towers: dict[str, Path]) -> None:
    path = tiny_hf_towers[kind]
    encoder, _ = build(path)
    encoder.eval()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = encoder({"pixel_values": pixels})
        theirs = reference(kind, path)(pixel_values=pixels)
    torch.testing.assert_close(ours.tokens, theirs.last_hidden_state, atol=ATOL, rtol=0)
    expected = (
        theirs.last_hidden_state[:, 0] if kind == "vit" else theirs.pooler_output
    )  # ViT: CLS token; CLIP: post-LN CLS; SigLIP: attention-pool head; DINOv2: normed CLS
    torch.testing.assert_close(ours.pooled, expected, atol=ATOL, rtol=0)
    assert ours.mask.all() and encoder.dim == 32


@pytest.mark.parametrize("kind", VISION)
def test_processor_matches_the_hf_image_processor(
    kind: str, tiny_hf_towers: dict[str, Path], media: dict[str, Any]
) -> None:
    path = tiny_hf_towers[kind]
    _, processor = build(path)
    assert isinstance(processor, HFImageProcessor)
    from PIL import Image

    hf = tf.AutoImageProcessor.from_pretrained(path)
    # At the model's size no resampling happens: rescale and mean/std must agree exactly.
    exact = media["png"]("exact.png", size=(32, 32))
    ours = processor([exact])["pixel_values"]
    theirs = hf(Image.open(exact), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    # Larger images: the same output size (resampling filters may differ: ViT's is bilinear).
    large = media["png"]("large.png", size=(48, 48))
    assert (
        processor([large])["pixel_values"].shape
        == hf(Image.open(large))["pixel_values"][0][None].shape
    )


@pytest.mark.parametrize("kind", ["clip", "siglip", "dinov2"])
def test_every_parameter_gets_a_gradient(kind: str, tiny_hf_towers: dict[str, Path]) -> None:
    encoder, _ = build(tiny_hf_towers[kind])
    encoder.train()
    out = encoder({"pixel_values": torch.randn(2, 3, 32, 32)})
    (out.tokens.pow(2).mean() + out.pooled.pow(2).mean()).backward()
    missing = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_pooling_choices_and_errors(tiny_hf_towers: dict[str, Path], tmp_path: Path) -> None:
    encoder, _ = build(tiny_hf_towers["clip"], pooling="mean")
    out = encoder.eval()({"pixel_values": torch.randn(1, 3, 32, 32)})
    torch.testing.assert_close(out.pooled, out.tokens.mean(1))
    with pytest.raises(ValueError, match="SiglipVisionModel has no CLS token"):
        build(tiny_hf_towers["siglip"], pooling="cls")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"model_type='bert', not a supported vision tower"):
        build(bert)
    with pytest.raises(FileNotFoundError, match=r"no preprocessor_config\.json"):
        shutil.copy(tiny_hf_towers["vit"] / "config.json", tmp_path / "config.json")
        build(tmp_path)


def test_missing_weights_are_an_error(tiny_hf_towers: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_hf_towers["vit"], tmp_path / "vit")
    weights = tmp_path / "vit" / "model.safetensors"
    state = load_file(weights)
    del state["layernorm.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks weights of ViTModel: layernorm\.weight"):
        build(tmp_path / "vit")


def test_frozen_tower_and_architecture_only(tiny_hf_towers: dict[str, Path]) -> None:
    frozen, _ = build(tiny_hf_towers["clip"], freeze=True)
    assert isinstance(frozen, ImageHFEncoder)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen.train().model.training
    fresh, _ = build(tiny_hf_towers["clip"], pretrained=False)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {
        k: v.shape for k, v in frozen.state_dict().items()
    }


@pytest.mark.parametrize(("modality", "kind"), [("image", "clip_full"), ("audio", "whisper")])
def test_saved_model_loads_without_the_source_dir(
    modality: str, kind: str, tiny_hf_towers: dict[str, Path], tmp_path: Path, media: Any
) -> None:
    import omnifuse
    from omnifuse.models import create_model

    source = tmp_path / kind
    shutil.copytree(tiny_hf_towers[kind], source)
    others = [f"model.encoders.{m}=null" for m in ("image", "audio", "video") if m != modality]
    model, processors = create_model(
        "tiny", [f"model.encoders.{modality}={{type: hf, path: {source}}}", *others]
    )
    raw = [media["png"]("a.png")] if modality == "image" else [media["wav"]("a.wav")]
    batch = {modality: processors[modality](raw), "text": processors["text"](["a red circle"])}
    with torch.no_grad():
        before = model.eval()(batch).fused.pooled
    omnifuse.save(tmp_path / "m", model, processors)
    shutil.rmtree(source)  # loading needs only the saved directory
    loaded, loaded_processors, _ = omnifuse.load(tmp_path / "m")
    again = {modality: loaded_processors[modality](raw), "text": batch["text"]}
    with torch.no_grad():
        assert torch.equal(loaded(again).fused.pooled, before)
