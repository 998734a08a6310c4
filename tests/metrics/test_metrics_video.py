"""PSNR, SSIM, Fréchet distance and attribute accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnifuse.metrics import attribute_accuracy, frechet_distance, video_metrics
from omnifuse.metrics.video import extract_features, video_psnr, video_ssim

PSNR_MSE_004 = 10 * math.log10(1 / 0.04)  # error 0.2 everywhere -> MSE 0.04 -> 13.979 dB


def test_psnr_of_known_mse_uint8_and_float() -> None:
    original = torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8)
    reconstructed = torch.full_like(original, 51)  # 51 / 255 = 0.2
    per_clip, mean = video_psnr(reconstructed, original)
    assert per_clip == pytest.approx([PSNR_MSE_004], abs=1e-6)
    assert mean == pytest.approx(PSNR_MSE_004, abs=1e-6)
    _, mean_float = video_psnr(reconstructed.float() / 255, original.numpy())
    assert mean_float == pytest.approx(PSNR_MSE_004, abs=1e-6)


def test_identical_clip_gives_inf_and_the_mean_is_capped() -> None:
    original = torch.full((2, 2, 3, 8, 8), 0.5)
    reconstructed = original.clone()
    reconstructed[1] += 0.1  # MSE 0.01 -> 20 dB
    per_clip, mean = video_psnr(reconstructed, original, max_db=100.0)
    assert per_clip[0] == math.inf
    assert per_clip[1] == pytest.approx(20.0, abs=1e-4)  # 0.6 is inexact in float32
    assert mean == pytest.approx(60.0, abs=1e-4)
    assert video_psnr(reconstructed, original, max_db=None)[1] == math.inf


def test_clips_of_different_lengths_as_a_list() -> None:
    originals = [torch.zeros(2, 3, 8, 8), torch.zeros(5, 3, 8, 8)]
    reconstructions = [clip + 0.2 for clip in originals]
    per_clip, _ = video_psnr(reconstructions, originals)
    assert per_clip == pytest.approx([PSNR_MSE_004, PSNR_MSE_004], abs=1e-6)


def test_ssim_identical_is_one_and_noise_lowers_it() -> None:
    generator = torch.Generator().manual_seed(0)
    original = torch.rand(2, 3, 3, 16, 16, generator=generator)
    noisy = (original + 0.2 * torch.randn(original.shape, generator=generator)).clamp(0, 1)
    assert video_ssim(original, original)[1] == pytest.approx(1.0, abs=1e-6)
    per_clip, _ = video_ssim(noisy, original)
    assert all(0.5 < value < 0.9 for value in per_clip)


def test_frechet_distance_identical_and_shifted() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])  # squared norm 5.25
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    # same samples shifted: covariances are identical, so the distance is exactly |shift|^2
    assert frechet_distance(features, features + shift) == pytest.approx(5.25, abs=1e-6)
    # independent Gaussians N(0, I) and N(shift, I): ~|shift|^2 up to sampling error
    other = rng.normal(size=(4000, 4)) + shift
    big = rng.normal(size=(4000, 4))
    assert frechet_distance(big, other) == pytest.approx(5.25, abs=0.1)


def test_frechet_distance_singular_covariance_stays_finite() -> None:
    features = np.random.default_rng(1).normal(size=(3, 8))  # D > N: rank-deficient covariance
    value = frechet_distance(features, features + 1.0)
    assert math.isfinite(value)
    assert value == pytest.approx(8.0, abs=1e-3)


def test_video_metrics_with_a_caller_feature_extractor() -> None:
    clips = torch.rand(4, 2, 3, 8, 8, generator=torch.Generator().manual_seed(2))

    def channel_means(batch: torch.Tensor) -> torch.Tensor:  # [B, T, C, H, W] -> [B, C]
        return batch.mean(dim=(1, 3, 4))

    assert extract_features(channel_means, clips, batch_size=3).shape == (4, 3)
    result = video_metrics(
        clips,
        clips,
        feature_extractor=channel_means,
        predicted_labels=["red", "blue"],
        intended_labels=["red", "red"],
    )
    assert result.frechet_distance == pytest.approx(0.0, abs=1e-6)
    assert result.ssim == pytest.approx(1.0, abs=1e-6)
    assert result.attribute_accuracy == 0.5
    assert result.psnr == 100.0  # all clips exact, capped mean


def test_attribute_accuracy() -> None:
    assert attribute_accuracy(torch.tensor([1, 2, 3]), [1, 2, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        attribute_accuracy([1, 2], [1, 2, 3])


@pytest.mark.parametrize(
    ("prediction", "reference", "match"),
    [
        (torch.full((2, 3, 8, 8), 1.5), torch.zeros(2, 3, 8, 8), r"must lie in \[0, 1\]"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 8, 8), r"prediction shape \(2, 3, 8, 8\)"),
        (torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), r"\[T, C, H, W\] or \[N, T, C, H, W\]"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), torch.zeros(2, 3, 8, 8), "uint8 or float"),
    ],
)
def test_bad_clips_are_rejected(
    prediction: torch.Tensor, reference: torch.Tensor, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        video_psnr(prediction, reference)


def test_bad_ssim_and_feature_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 6x6"):
        video_ssim(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="feature dims differ: 3 vs 4"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="needs both predicted_labels and intended_labels"):
        video_metrics(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 2, 3, 8, 8), predicted_labels=[1])
