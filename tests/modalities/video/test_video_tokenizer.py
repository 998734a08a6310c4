"""VQ video tokenizer: shapes, straight-through gradients, EMA codebook, masks, overfitting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_model, save_model

from omnifuse.modalities.video.tokenizer import VectorQuantizer, VideoTokenizer
from omnifuse.tasks.video_generation import clip_psnr
from video_helpers import (  # noqa: F401 - one_thread is an autouse fixture
    FRAMES,
    MEAN,
    SIZE,
    STD,
    one_thread,
    square_clips,
    tiny_tokenizer_config,
)


def tiny_tokenizer(**overrides: object) -> VideoTokenizer:
    return VideoTokenizer(tiny_tokenizer_config(**overrides), FRAMES, SIZE, MEAN, STD)


def test_encode_decode_shapes() -> None:
    tokenizer = tiny_tokenizer()
    clips = square_clips()
    codes = tokenizer.encode_video(clips)
    assert tokenizer.grid == (2, 4, 4) and tokenizer.num_tokens == 32
    assert codes.shape == (4, 2, 4, 4) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    decoded = tokenizer.decode_codes(codes)
    assert decoded.shape == clips.shape
    assert torch.equal(tokenizer.decode_codes(codes.flatten(1)), decoded)  # flat [B, N] too
    out = tokenizer(clips)
    assert out.reconstruction.shape == clips.shape and out.codes.shape == codes.shape


def test_bad_inputs_name_the_expected_shapes() -> None:
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match=r"expected \[B, 4, 3, 16, 16\]"):
        tokenizer.encode_video(torch.zeros(1, 6, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected \[B, 32\] or \[B, 2, 4, 4\]"):
        tokenizer.decode_codes(torch.zeros(1, 31, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 16\); got values in \[0, 16\]"):
        tokenizer.decode_codes(torch.arange(32)[None] % 17)
    with pytest.raises(ValueError, match="pick image_size a multiple of 4"):
        VideoTokenizer(tiny_tokenizer_config(), FRAMES, 18, MEAN, STD)


def test_straight_through_gradient_reaches_the_encoder() -> None:
    tokenizer = tiny_tokenizer()
    clips = square_clips()
    out = tokenizer(clips)
    # Reconstruction only: the encoder is reached solely through the straight-through estimator.
    (out.reconstruction - clips).pow(2).mean().backward()
    first_conv = tokenizer.encoder[0]
    assert isinstance(first_conv, torch.nn.Conv2d) and first_conv.weight.grad is not None
    assert float(first_conv.weight.grad.abs().sum()) > 0
    missing = [n for n, p in tokenizer.named_parameters() if p.grad is None]
    assert not missing


def test_ema_codebook_updates_only_in_training() -> None:
    tokenizer = tiny_tokenizer()
    clips = square_clips()
    book = tokenizer.quantizer.codebook.clone()
    tokenizer.eval()
    tokenizer(clips)
    tokenizer.encode_video(clips)
    assert torch.equal(tokenizer.quantizer.codebook, book)
    assert not bool(tokenizer.quantizer.initialized)
    tokenizer.train()
    out = tokenizer(clips)
    assert bool(tokenizer.quantizer.initialized)
    assert not torch.equal(tokenizer.quantizer.codebook, book)
    # Seeded from encoder outputs, the codebook spreads the clips over several codes.
    assert out.codes.unique().numel() > 1 and float(out.perplexity) > 1.0


def test_dead_codes_restart_on_encoder_outputs() -> None:
    quantizer = VectorQuantizer(8, 2, decay=0.5, restart_threshold=1.0)
    quantizer.train()
    vectors = torch.tensor([[5.0, 5.0], [5.1, 5.0], [-5.0, -5.0]]).repeat(20, 1)
    quantizer(vectors)
    quantizer.codebook[0] = torch.tensor([100.0, 100.0])  # a code nothing will ever pick
    quantizer.cluster_size[0] = 0.0
    quantizer(vectors)
    distances = torch.cdist(quantizer.codebook[:1], vectors).min()
    assert float(distances) < 1e-5  # moved onto one of the inputs


def test_padding_frames_do_not_reach_valid_codes() -> None:
    tokenizer = tiny_tokenizer()
    clips = square_clips()[:2]
    frame_mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    noisy = clips.clone()
    noisy[0, 2:] = torch.randn_like(noisy[0, 2:]) * 5
    mask = tokenizer.token_mask(frame_mask)
    assert mask.shape == (2, 2, 4, 4)
    assert mask[0, 0].all() and not mask[0, 1].any() and mask[1].all()
    assert torch.equal(
        tokenizer.encode_video(noisy, frame_mask), tokenizer.encode_video(clips, frame_mask)
    )


def test_tiny_tokenizer_overfits_a_few_clips() -> None:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(codebook_size=32)
    clips = square_clips()
    mask = torch.ones(clips.shape[:2], dtype=torch.bool)

    def psnr() -> float:
        tokenizer.eval()
        with torch.no_grad():
            decoded = tokenizer.decode_codes(tokenizer.encode_video(clips))
        tokenizer.train()
        return float(clip_psnr(tokenizer.to_unit(decoded), tokenizer.to_unit(clips), mask))

    before = psnr()
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=3e-3)
    for _ in range(150):
        out = tokenizer(clips)
        loss = (out.reconstruction - clips).pow(2).mean() + 0.25 * out.commitment_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = psnr()
    assert after > before + 10.0, (before, after)
    assert after > 22.0


def test_weights_and_codebook_round_trip_through_safetensors(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.train()
    tokenizer(square_clips())  # seed and update the codebook buffers
    save_model(tokenizer, str(tmp_path / "vq.safetensors"))
    restored = tiny_tokenizer()
    load_model(restored, str(tmp_path / "vq.safetensors"), strict=True)
    for name in ("codebook", "cluster_size", "embed_sum", "initialized"):
        assert torch.equal(getattr(restored.quantizer, name), getattr(tokenizer.quantizer, name))
    clips = square_clips()
    assert torch.equal(restored.encode_video(clips), tokenizer.encode_video(clips))
