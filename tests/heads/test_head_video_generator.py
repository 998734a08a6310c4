"""``video_generator`` head: registry build, what ``model(batch)`` returns, generation, saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_model, save_model

import omnifuse.heads.video_generator  # noqa: F401 - registers the head (until heads/ imports it)
from omnifuse.config.model import EncodersConfig, ModelConfig
from omnifuse.config.video_generator import VideoSamplingConfig
from omnifuse.heads.video_generator import VideoGenerator
from omnifuse.layers.sampling import SamplingOptions
from omnifuse.models import MultimodalModel, build_model
from omnifuse.registry import HeadContext, head_builder, list_heads
from video_helpers import (  # noqa: F401 - one_thread is an autouse fixture
    FRAMES,
    SIZE,
    moving_square,
    one_thread,
    tiny_generator_config,
    tiny_model_config,
)


def build() -> tuple[MultimodalModel, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model, processors = build_model(tiny_model_config())
    model.eval()
    text = processors["text"](["the red square moves right", "the blue square moves left"])
    video = processors["video"]([moving_square("red", 1, 1), moving_square("blue", -1, 10)])
    return model, text, video


def test_registered_and_built_from_the_video_processor() -> None:
    assert "video_generator" in list_heads()
    model, _, _ = build()
    head = model.heads["generator"]
    assert isinstance(head, VideoGenerator)
    assert head.tokenizer.grid == (FRAMES // 2, SIZE // 4, SIZE // 4)
    assert head.tokenizer.mean == (0.5, 0.5, 0.5)  # the processor's normalisation


def test_build_without_a_video_encoder_names_the_fix() -> None:
    config = ModelConfig.model_construct(
        encoders=EncodersConfig(text=tiny_model_config().encoders.text),
        heads={"generator": tiny_generator_config()},
    )
    context = HeadContext(32, config, {})
    with pytest.raises(ValueError, match=r"configure model.encoders.video \(configured: text\)"):
        head_builder("video_generator")(tiny_generator_config(), context)


def test_model_forward_returns_greedy_codes() -> None:
    model, text, _ = build()
    with torch.no_grad():
        codes = model({"text": text}).heads["generator"]
    assert codes.shape == (2, 32) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 16


def test_teacher_forced_logits_and_gradients() -> None:
    model, text, _ = build()
    model.train()
    head = model.heads["generator"]
    features = model.encode({"text": text})["text"]
    logits = head(features, torch.randint(16, (2, 32)))
    assert logits.shape == (2, 32, 16) and torch.isfinite(logits).all()
    logits.pow(2).mean().backward()
    prior_grads = [p.grad is not None for p in head.prior.parameters()]
    assert all(prior_grads)
    text_grads = [p.grad is not None for p in model.encoders["text"].parameters()]
    assert any(text_grads)  # the condition learns too


def test_generate_returns_frames_in_unit_range() -> None:
    model, text, _ = build()
    head = model.heads["generator"]
    features = model.encode({"text": text})["text"]
    frames = head.generate(features, temperature=1.0, top_k=4, generator=torch.Generator())
    assert frames.shape == (2, FRAMES, 3, SIZE, SIZE)
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    same = [
        head.generate(features, top_p=0.8, guidance=2.0, generator=torch.Generator().manual_seed(1))
        for _ in range(2)
    ]
    assert torch.equal(same[0], same[1])


def test_configured_sampling_is_the_default_and_arguments_override_it() -> None:
    config = tiny_model_config()
    head_config = config.heads["generator"].model_copy(
        update={"sampling": VideoSamplingConfig(temperature=0.0, top_k=3, guidance=2.5)}
    )
    model, processors = build_model(config.model_copy(update={"heads": {"generator": head_config}}))
    head = model.eval().heads["generator"]
    assert head.options() == SamplingOptions(temperature=0.0, top_k=3, guidance=2.5)
    assert head.options(temperature=0.7, guidance=1.0) == SamplingOptions(0.7, 3, None, 1.0)
    features = model.encode({"text": processors["text"](["the red square moves right"])})["text"]
    # Greedy by configuration: different random sources give the same clip.
    first = head.generate(features, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, head.generate(features, generator=torch.Generator().manual_seed(2)))


def test_model_weights_round_trip_with_the_codebook(tmp_path: Path) -> None:
    model, text, video = build()
    head = model.heads["generator"]
    head.train()
    head.tokenizer(video["pixel_values"], video["frame_mask"])  # seed the codebook buffers
    model.eval()
    save_model(model, str(tmp_path / "model.safetensors"))
    restored, _ = build_model(tiny_model_config(), pretrained=False)
    load_model(restored, str(tmp_path / "model.safetensors"), strict=True)
    restored.eval()
    assert bool(restored.heads["generator"].tokenizer.quantizer.initialized)
    with torch.no_grad():
        outputs = [m({"text": text}).heads["generator"] for m in (model, restored)]
        frames = [m.heads["generator"].decode(outputs[0]) for m in (model, restored)]
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(frames[0], frames[1])
