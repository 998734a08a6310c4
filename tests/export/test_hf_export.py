"""``omnifuse export RUN --format hf``: the run's HF components as standard HF directories.

A tiny run (CLIP vision tower + Qwen2-style causal_lm, trained 3 steps; its sources deleted)
and a fine-tuned Whisper (encoder + whisper_decoder) are exported; transformers loads each
directory with ``from_pretrained`` and reproduces omnifuse's fine-tuned modules, and the
exported vision tower loads back into omnifuse as ``{type: hf, path: DIR}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from typer.testing import CliRunner

from hf_run_helpers import HFRun, train_lm_run, whisper_model
from omnifuse.cli.main import app
from omnifuse.config.model import EncodersConfig
from omnifuse.export.hf import export_hf_dual_encoder
from omnifuse.inference import Pipeline
from omnifuse.models.hf_dual_encoder import load_hf_dual_encoder
from omnifuse.registry import encoder_spec

ATOL = 1e-6
"""Exported vs omnifuse modules: the same weights through the same transformers code (fp32,
CPU; measured 0.0)."""

runner = CliRunner()
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_hf_dual_encoder import save_dual  # noqa: E402  (its tiny CLIP / SigLIP writer)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> HFRun:
    return train_lm_run(tmp_path_factory.mktemp("hf-export-lm"))


@pytest.fixture(scope="module")
def lm_export(lm_run: HFRun) -> tuple[Path, str]:
    out = lm_run.run_dir.parent / "hf"
    result = runner.invoke(
        app, ["export", str(lm_run.run_dir), "--format", "hf", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.slow
def test_export_lists_what_was_and_was_not_exported(lm_export: tuple[Path, str]) -> None:
    out, output = lm_export
    report = json.loads((out / "hf_export.json").read_text())
    assert report["exported"] == {"encoders.image": "encoders/image", "heads.lm": "heads/lm"}
    assert set(report["not_exported"]) == {"fusion", "heads.lm.projector"}
    assert "exported encoders.image" in output and "not exported fusion" in output


@pytest.mark.slow
def test_transformers_loads_the_fine_tuned_vision_tower(
    lm_run: HFRun, lm_export: tuple[Path, str]
) -> None:
    out, _ = lm_export
    folder = out / "encoders" / "image"
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        f.name for f in folder.iterdir()
    }
    theirs = tf.CLIPVisionModel.from_pretrained(folder).eval()
    ours = Pipeline.load(lm_run.run_dir, device="cpu").model.encoder("image").eval()
    with torch.no_grad():
        want = ours({"pixel_values": pixels()})
        got = theirs(pixel_values=pixels())
    torch.testing.assert_close(got.last_hidden_state, want.tokens, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.pooler_output, want.pooled, atol=ATOL, rtol=0)
    original = lm_run.original["encoders.image"]
    moved = max(float((theirs.state_dict()[k] - v).abs().max()) for k, v in original.items())
    assert moved > 1e-3  # the fine-tuned weights, not the source's
    tf.AutoImageProcessor.from_pretrained(folder)  # its processor loads too


@pytest.mark.slow
def test_exported_tower_loads_back_into_omnifuse(
    lm_run: HFRun, lm_export: tuple[Path, str]
) -> None:
    out, _ = lm_export
    config = EncodersConfig.model_validate(
        {"image": {"type": "hf", "path": str(out / "encoders" / "image")}}
    )
    spec = encoder_spec("image", "hf")
    encoder = spec.build_encoder(config.image, spec.build_processor(config.image), True).eval()
    ours = Pipeline.load(lm_run.run_dir, device="cpu").model.encoder("image").eval()
    with torch.no_grad():
        got, want = encoder({"pixel_values": pixels()}), ours({"pixel_values": pixels()})
    torch.testing.assert_close(got.tokens, want.tokens, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_transformers_loads_the_fine_tuned_lm(lm_run: HFRun, lm_export: tuple[Path, str]) -> None:
    out, _ = lm_export
    folder = out / "heads" / "lm"
    lm = tf.AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tokenizer("a red square").input_ids])
    head = Pipeline.load(lm_run.run_dir, device="cpu").model.heads["lm"].eval()
    with torch.no_grad():
        torch.testing.assert_close(lm(ids).logits, head.lm(ids).logits, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_whisper_exports_as_one_model(tmp_path: Path) -> None:
    run = whisper_model(tmp_path)
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", str(run.run_dir), "--format", "hf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "hf_export.json").read_text())
    assert report["exported"] == {"encoders.audio + heads.asr": "heads/asr"}
    folder = out / "heads" / "asr"
    whisper = tf.WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = tf.WhisperProcessor.from_pretrained(folder)
    assert whisper.generation_config.decoder_start_token_id == 257
    model = Pipeline.load(run.run_dir, device="cpu").model.eval()
    features = torch.randn(1, 50 * 2, 16)  # [B, frames, mels]: the 1 s window
    tokens = torch.tensor([[257, 10, 11]])
    with torch.no_grad():
        encoded = model.encoder("audio")({"features": features}).tokens
        want = whisper.model.encoder(input_features=features.transpose(1, 2)).last_hidden_state
        torch.testing.assert_close(encoded, want, atol=ATOL, rtol=0)
        head = model.heads["asr"]
        decoder_out = head.decoder(input_ids=tokens, encoder_hidden_states=encoded)
        ours = head.proj_out(decoder_out.last_hidden_state)
        theirs = whisper(encoder_outputs=(want,), decoder_input_ids=tokens).logits
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)
    moved = max(
        float((whisper.state_dict()[k] - v).abs().max()) for k, v in run.original["whisper"].items()
    )
    assert moved > 1e-3 and processor.feature_extractor.feature_size == 16


def test_a_run_without_hf_parts_is_refused_with_the_list(export_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", str(export_run), "--format", "hf", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "no component from a Hugging Face directory" in result.output
    assert "encoders.image" in result.output and "fusion" in result.output


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_dual_encoder_exports_as_one_model(
    kind: str, tmp_path: Path, media: dict[str, Any], tiny_hf_bert_dir: Path
) -> None:
    reference = save_dual(kind, tmp_path / "source", tiny_hf_bert_dir)
    model, processors = load_hf_dual_encoder(tmp_path / "source")
    texts = processors["text"](["a red circle", "the blue square moves left"])
    images = processors["image"]([media["png"]("a.png"), media["png"]("b.png", seed=1)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # fine-tune one step
    model.train()
    out = model(texts, images)
    (-out.logits_per_image.diagonal().sum()).backward()
    optimizer.step()
    model.eval()
    folder = export_hf_dual_encoder(model, processors, tmp_path / "hf")
    cls = tf.CLIPModel if kind == "clip" else tf.SiglipModel
    theirs = cls.from_pretrained(folder).eval()
    with torch.no_grad():
        want = model(texts, images)
        hf_text = {"input_ids": texts["input_ids"]}
        if kind == "clip":
            hf_text["attention_mask"] = texts["attention_mask"]
        got = theirs(**hf_text, pixel_values=images["pixel_values"])
        again = load_hf_dual_encoder(folder)[0](texts, images)
    torch.testing.assert_close(got.logits_per_image, want.logits_per_image, atol=ATOL, rtol=0)
    torch.testing.assert_close(again.logits_per_image, want.logits_per_image, atol=ATOL, rtol=0)
    moved = max(
        float((theirs.state_dict()[k] - v).abs().max()) for k, v in reference.state_dict().items()
    )
    assert moved > 1e-3


def test_a_lora_adapted_tower_exports_merged(
    tiny_hf_towers: dict[str, Path], tmp_path: Path
) -> None:
    """LoRA layers (``.base_layer`` names) are folded in before writing: transformers loads a
    plain CLIPVisionModel that computes what omnifuse's adapted tower does."""
    from omnifuse.config.loader import validate_config
    from omnifuse.export.hf import export_hf
    from omnifuse.models import build_model
    from omnifuse.models.persistence import save

    tower = {"type": "hf", "path": str(tiny_hf_towers["clip"])}
    lora = {"type": "lora", "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    run = validate_config(
        {"model": {"encoders": {"image": tower}, "adapters": {"encoders.image": lora}}}
    )
    torch.manual_seed(0)
    model, processors = build_model(run.model)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would make the adapter a no-op
            torch.nn.init.normal_(param, std=0.2)
    model.eval()
    side = processors["image"].config.image_size
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.encoder("image")({"pixel_values": x}).tokens
    report = export_hf(save(tmp_path / "model", model, processors, run), tmp_path / "hf", log=str)
    theirs = tf.CLIPVisionModel.from_pretrained(report.exported["encoders.image"]).eval()
    with torch.no_grad():
        got = theirs(pixel_values=x).last_hidden_state
    plain = tf.CLIPVisionModel.from_pretrained(tiny_hf_towers["clip"]).eval()
    with torch.no_grad():
        untouched = plain(pixel_values=x).last_hidden_state
    assert (untouched - want).abs().max() > 1e-3  # the adapter changes the tower
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
