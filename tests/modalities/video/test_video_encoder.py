"""TubeletViT contract: shapes, token masks, padding invariance, gradients, registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from omnifuse.config.video import TubeletViTConfig
from omnifuse.modalities.video import TubeletViT, VideoProcessor
from omnifuse.registry import encoder_spec

T, S = 8, 32  # frames, frame size
TOKENS_PER_TUBELET = (S // 8) ** 2


def tiny(**fields: Any) -> TubeletViTConfig:
    base: dict[str, Any] = {
        "dim": 32,
        "num_layers": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "patch_size": 8,
        "tubelet_size": 2,
        "processor": {"num_frames": T, "image_size": S},
    }
    return TubeletViTConfig.model_validate({**base, **fields})


def clips(batch: int = 2, frames: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 3, S, S, generator=torch.Generator().manual_seed(seed))


def frame_mask(*valid: int, frames: int = T) -> torch.Tensor:
    return torch.arange(frames)[None, :] < torch.tensor(valid)[:, None]


def test_output_shapes() -> None:
    out = TubeletViT(tiny()).eval()({"pixel_values": clips(), "frame_mask": frame_mask(8, 8)})
    n = T // 2 * TOKENS_PER_TUBELET
    assert out.tokens.shape == (2, n, 32) and out.pooled.shape == (2, 32)
    assert out.mask.shape == (2, n) and out.mask.dtype == torch.bool and bool(out.mask.all())
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


def test_token_mask_marks_tubelets_with_any_valid_frame() -> None:
    model = TubeletViT(tiny())
    mask = model.token_mask(frame_mask(5, 2))
    # 5 valid frames -> tubelets (0,1) (2,3) (4,5) valid, (6,7) not; 2 frames -> one tubelet.
    per_tubelet = mask.view(2, T // 2, TOKENS_PER_TUBELET)
    assert (per_tubelet == per_tubelet[:, :, :1]).all()
    assert per_tubelet[:, :, 0].tolist() == [[True, True, True, False], [True, False, False, False]]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_frames_do_not_change_valid_outputs(pooling: str) -> None:
    model = TubeletViT(tiny(pooling=pooling)).eval()
    mask = frame_mask(5, 8)
    clean = clips()
    clean[0, 5:] = 0.0
    noisy = clean.clone()
    noisy[0, 5:] = 100.0 * torch.randn(3, 3, S, S)  # garbage in the padding frames
    a = model({"pixel_values": clean, "frame_mask": mask})
    b = model({"pixel_values": noisy, "frame_mask": mask})
    valid = a.mask[0]
    assert int(valid.sum()) == 3 * TOKENS_PER_TUBELET + (pooling == "cls")
    torch.testing.assert_close(b.tokens[0][valid], a.tokens[0][valid], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.pooled, a.pooled, atol=1e-5, rtol=1e-4)
    # Sanity: had those frames counted as valid, the garbage would have changed the output.
    c = model({"pixel_values": noisy, "frame_mask": frame_mask(8, 8)})
    assert not torch.allclose(c.pooled[0], a.pooled[0], atol=1e-3)


def test_short_clip_matches_padded_clip() -> None:
    model = TubeletViT(tiny()).eval()
    short = clips(batch=1, frames=4)
    padded = torch.cat([short, torch.zeros(1, 4, 3, S, S)], dim=1)
    a = model({"pixel_values": short})
    b = model({"pixel_values": padded, "frame_mask": frame_mask(4)})
    assert a.tokens.shape[1] == 2 * TOKENS_PER_TUBELET
    torch.testing.assert_close(b.tokens[0][b.mask[0]], a.tokens[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.pooled, a.pooled, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_every_parameter_gets_a_gradient(pooling: str) -> None:
    model = TubeletViT(tiny(pooling=pooling, dropout=0.1)).train()
    out = model({"pixel_values": clips(), "frame_mask": frame_mask(5, 8)})
    (out.tokens.pow(2).mean() + out.pooled.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_deterministic_default_mask_and_unknown_keys() -> None:
    model = TubeletViT(tiny()).eval()
    x = clips()
    explicit = model({"pixel_values": x, "frame_mask": frame_mask(8, 8)})
    implicit = model({"pixel_values": x, "present": torch.ones(2, dtype=torch.bool)})
    torch.testing.assert_close(implicit.tokens, explicit.tokens)
    torch.testing.assert_close(model({"pixel_values": x}).pooled, explicit.pooled)


def test_gradient_checkpointing_keeps_outputs() -> None:
    model = TubeletViT(tiny()).train()
    batch = {"pixel_values": clips(), "frame_mask": frame_mask(6, 8)}
    ref = model(batch).pooled
    model.set_gradient_checkpointing(True)
    torch.testing.assert_close(model(batch).pooled, ref)


def test_bad_shapes_are_explained() -> None:
    model = TubeletViT(tiny())
    with pytest.raises(ValueError, match="multiple of tubelet_size=2 and at most num_frames=8"):
        model({"pixel_values": clips(frames=7)})
    with pytest.raises(ValueError, match="T=10"):
        model({"pixel_values": clips(frames=10)})
    with pytest.raises(ValueError, match=r"expected \[B, T, 3, 32, 32\]"):
        model({"pixel_values": torch.zeros(1, 8, 3, 16, 16)})
    with pytest.raises(ValueError, match=r"frame_mask has shape \(2, 4\)"):
        model({"pixel_values": clips(), "frame_mask": frame_mask(2, 2, frames=4)})
    with pytest.raises(KeyError, match="pixel_values"):
        model({"frames": clips()})


def test_registry_end_to_end_from_mp4(media: dict[str, Callable[..., Path]]) -> None:
    spec = encoder_spec("video", "tubelet_vit")
    config = tiny()
    processor = spec.build_processor(config)
    assert isinstance(processor, VideoProcessor)
    encoder = spec.build_encoder(config, processor, True)
    assert isinstance(encoder, TubeletViT) and encoder.modality == "video"
    batch = processor([media["mp4"]("a.mp4", frames=3), media["mp4"]("b.mp4", frames=12)])
    assert batch["frame_mask"].sum(dim=1).tolist() == [3, 8]
    out = encoder.eval()(batch)
    assert out.mask.sum(dim=1).tolist() == [2 * TOKENS_PER_TUBELET, 4 * TOKENS_PER_TUBELET]
    assert torch.isfinite(out.pooled).all()
