"""Frame-wise HF vision towers as video encoders: per-frame parity with transformers, temporal
mean over real frames only, padding invariance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from omnifuse.config.model import EncodersConfig
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.modalities.video import FramewiseVideoEncoder
from omnifuse.registry import encoder_spec

ATOL = 1e-5


def build(path: Path, **fields: Any) -> tuple[Encoder, Processor[Any]]:
    config = EncodersConfig.model_validate({"video": {"type": "hf", "path": str(path), **fields}})
    spec = encoder_spec("video", "hf")
    processor = spec.build_processor(config.video)
    return spec.build_encoder(config.video, processor, True), processor


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_frames_match_the_transformers_tower(kind: str, tiny_hf_towers: dict[str, Path]) -> None:
    path = tiny_hf_towers[kind]
    encoder, _ = build(path, num_frames=3)
    assert isinstance(encoder, FramewiseVideoEncoder) and encoder.dim == 32
    pixels = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    cls = tf.CLIPVisionModel if kind == "clip" else tf.SiglipVisionModel
    with torch.no_grad():
        out = encoder.eval()({"pixel_values": pixels, "frame_mask": mask})
        frames = cls.from_pretrained(path).eval()(pixel_values=pixels.flatten(0, 1)).pooler_output
    frames = frames.view(2, 3, 32)
    torch.testing.assert_close(out.tokens[mask], frames[mask], atol=ATOL, rtol=0)
    assert (out.tokens[0, 2] == 0).all() and out.mask.equal(mask)
    torch.testing.assert_close(out.pooled[0], frames[0, :2].mean(0), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.pooled[1], frames[1].mean(0), atol=ATOL, rtol=0)


def test_processor_frames_follow_the_tower(
    tiny_hf_towers: dict[str, Path], media: dict[str, Any]
) -> None:
    _, processor = build(tiny_hf_towers["dinov2"], num_frames=4)
    batch = processor([media["mp4"]("a.mp4", frames=2), media["mp4"]("b.mp4", frames=12)])
    assert batch["pixel_values"].shape == (2, 4, 3, 32, 32)
    assert batch["frame_mask"].sum(1).tolist() == [2, 4]
    assert processor.config.resize_size == 36  # BitImageProcessor shortest_edge of the fixture


def test_video_generator_head_needs_the_native_video_encoder(
    tiny_hf_towers: dict[str, Path],
) -> None:
    from omnifuse.config.model import ModelConfig
    from omnifuse.heads.video_generator import video_processor_config
    from omnifuse.registry import HeadContext

    model = ModelConfig.model_validate(
        {"encoders": {"video": {"type": "hf", "path": str(tiny_hf_towers["clip"])}}}
    )
    with pytest.raises(ValueError, match="needs the native video encoder"):
        video_processor_config(HeadContext(32, model, {}), "video_generator")
