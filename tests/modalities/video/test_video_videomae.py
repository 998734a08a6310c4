"""VideoMAE as the video ``hf`` tower, through the production config -> registry path: hidden
states equal transformers' ``VideoMAEModel`` on a tiny random-init directory, the processor
follows its ``preprocessor_config.json``, and a model with it saves and loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers as tf

from omnifuse.config.model import EncodersConfig
from omnifuse.modalities.base import Encoder, Processor
from omnifuse.modalities.video import VideoMAEEncoder
from omnifuse.registry import encoder_spec

ATOL = 1e-5  # float32, the same module and kernels (measured: 0.0)
FRAMES = 4


@pytest.fixture(scope="module")
def videomae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer VideoMAE (dim 32, 4 frames of 32x32, tubelets 2x8x8)."""
    out = tmp_path_factory.mktemp("videomae")
    config = tf.VideoMAEConfig(
        image_size=32,
        patch_size=8,
        num_frames=FRAMES,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    tf.VideoMAEModel(config).eval().save_pretrained(out)
    processor = tf.VideoMAEImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(out)
    return out


def build(path: Path, **fields: Any) -> tuple[Encoder, Processor[Any]]:
    raw = {"video": {"type": "hf", "path": str(path), "num_frames": FRAMES, **fields}}
    config = EncodersConfig.model_validate(raw)
    spec = encoder_spec("video", "hf")
    processor = spec.build_processor(config.video)
    return spec.build_encoder(config.video, processor, True), processor


def test_hidden_states_match_transformers(videomae_dir: Path) -> None:
    encoder, _ = build(videomae_dir)
    assert isinstance(encoder, VideoMAEEncoder)
    encoder.eval()
    pixels = torch.randn(2, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = encoder({"pixel_values": pixels, "frame_mask": torch.ones(2, FRAMES)})
        theirs = tf.VideoMAEModel.from_pretrained(videomae_dir).eval()(pixel_values=pixels)
    torch.testing.assert_close(ours.tokens, theirs.last_hidden_state, atol=ATOL, rtol=0)
    assert ours.tokens.shape == (2, FRAMES // 2 * 16, 32) and ours.mask.all()
    expected = theirs.last_hidden_state.mean(dim=1)  # VideoMAE's classifier pools the mean
    torch.testing.assert_close(ours.pooled, expected, atol=ATOL, rtol=0)


def test_padded_frames_mask_their_tubelets(videomae_dir: Path) -> None:
    encoder, _ = build(videomae_dir)
    encoder.eval()
    pixels = torch.randn(2, FRAMES - 2, 3, 32, 32)  # a batch of 2-frame clips: padded to 4
    out = encoder({"pixel_values": pixels, "frame_mask": torch.tensor([[1, 1], [1, 0]])})
    assert out.mask.shape == (2, 32)
    assert out.mask[:, :16].all() and not out.mask[:, 16:].any()  # 2nd tubelet: padding only
    torch.testing.assert_close(out.pooled, out.tokens[:, :16].mean(dim=1), atol=ATOL, rtol=0)


def test_processor_follows_the_videomae_image_processor(videomae_dir: Path) -> None:
    _, processor = build(videomae_dir)
    clip = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    ours = processor([clip])
    assert ours["pixel_values"].shape == (1, FRAMES, 3, 32, 32)
    hf = tf.VideoMAEImageProcessor.from_pretrained(videomae_dir)
    # 32x32 frames need no resampling: rescale and ImageNet mean/std must agree exactly.
    frames = [clip[i] for i in (0, 2, 3, 5)]  # omnifuse's uniform sampling of 4 out of 6
    theirs = hf([list(frames)], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours["pixel_values"], theirs, atol=1e-5, rtol=0)


def test_num_frames_must_be_the_models(videomae_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"num_frames=8.*exactly 4 frames; set num_frames: 4"):
        build(videomae_dir, num_frames=8)
