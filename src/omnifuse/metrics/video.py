"""Video generation metrics: PSNR / SSIM of reconstructions, Fréchet feature distance, and
attribute accuracy.

Clips are [T, C, H, W] (one clip) or [N, T, C, H, W] (a batch, the layout of the video
``pixel_values`` batch key), either uint8 in 0..255 or float in [0, 1]; a list of clips of
different lengths is accepted too. PSNR and SSIM come from torchmetrics; the Fréchet distance is
the FID/FVD formula over features from an extractor supplied by the caller.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

# scipy ships no type information (and scipy-stubs is not a dependency).
from scipy import linalg
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from omnifuse.metrics._common import ArrayLike, as_tensor, check_same_length

logger = logging.getLogger(__name__)

Clips = torch.Tensor | npt.NDArray[Any] | Sequence[torch.Tensor | npt.NDArray[Any]]
FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
_SSIM_MIN_SIZE = 6  # torchmetrics' 11-tap Gaussian window reflect-pads by 5 pixels


@dataclass(frozen=True)
class VideoResult:
    """Video metrics; fields are ``None`` when not requested.

    Attributes:
        psnr_per_clip: PSNR in dB of each clip (MSE over all its frames and pixels); ``inf`` for
            an exact reconstruction.
        psnr: Mean of ``psnr_per_clip`` with each value capped at ``max_db`` (so one exact clip
            does not make the mean infinite).
        ssim_per_clip: Mean SSIM over each clip's frames.
        ssim: Mean of ``ssim_per_clip``.
        frechet_distance: Fréchet distance between extractor features of predictions and
            references (FVD-style when the extractor is a video network).
        attribute_accuracy: See :func:`attribute_accuracy`.
    """

    psnr_per_clip: list[float] | None = None
    psnr: float | None = None
    ssim_per_clip: list[float] | None = None
    ssim: float | None = None
    frechet_distance: float | None = None
    attribute_accuracy: float | None = None

    def scalars(self) -> dict[str, float | None]:
        """Flat view of the scalar fields (per-clip lists are left out)."""
        keys = ("psnr", "ssim", "frechet_distance", "attribute_accuracy")
        return {key: getattr(self, key) for key in keys}


def _unit_float(clip: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 0..255 -> float [0, 1]; float clips must already lie in [0, 1]."""
    if clip.dtype == torch.uint8:
        return clip.double() / 255.0
    if not clip.is_floating_point():
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {clip.dtype}")
    low, high = float(clip.min()), float(clip.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"float {name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "clamp or rescale first"
        )
    return clip.double()


def _as_clips(clips: Clips, name: str) -> list[torch.Tensor]:
    """Splits the input into float clips [T, C, H, W] in [0, 1]."""
    if isinstance(clips, torch.Tensor | np.ndarray):
        tensor = as_tensor(clips, name)
        if tensor.ndim == 4:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 5:
            raise ValueError(
                f"{name} must be [T, C, H, W] or [N, T, C, H, W], got {tuple(tensor.shape)}"
            )
        items = list(tensor)
    else:
        items = [as_tensor(clip, f"{name}[{i}]") for i, clip in enumerate(clips)]
    for index, clip in enumerate(items):
        if clip.ndim != 4:
            raise ValueError(f"{name}[{index}] must be [T, C, H, W], got {tuple(clip.shape)}")
    return [_unit_float(clip, f"{name}[{i}]") for i, clip in enumerate(items)]


def _paired_clips(predictions: Clips, references: Clips) -> list[tuple[torch.Tensor, torch.Tensor]]:
    preds, refs = _as_clips(predictions, "predictions"), _as_clips(references, "references")
    check_same_length(preds, refs)
    for index, (pred, ref) in enumerate(zip(preds, refs, strict=True)):
        if pred.shape != ref.shape:
            raise ValueError(
                f"clip {index}: prediction shape {tuple(pred.shape)} != reference shape "
                f"{tuple(ref.shape)}"
            )
    return list(zip(preds, refs, strict=True))


def video_psnr(
    predictions: Clips, references: Clips, max_db: float | None = 100.0
) -> tuple[list[float], float]:
    """Peak signal-to-noise ratio per clip and its mean.

    Args:
        predictions: Reconstructed clips (see the module docstring for layouts).
        references: Original clips, same shapes.
        max_db: Cap applied to each clip before averaging; ``None`` averages uncapped values
            (an exact clip then makes the mean ``inf``).

    Returns:
        ``(per_clip, mean)``; per-clip values are uncapped (``inf`` for identical clips).
    """
    per_clip = [
        float(peak_signal_noise_ratio(pred, ref, data_range=1.0))
        for pred, ref in _paired_clips(predictions, references)
    ]
    capped = per_clip if max_db is None else [min(value, max_db) for value in per_clip]
    return per_clip, sum(capped) / len(capped)


def video_ssim(predictions: Clips, references: Clips) -> tuple[list[float], float]:
    """Structural similarity (torchmetrics, Gaussian window 11, sigma 1.5) per clip and mean.

    Each clip's frames are scored as a batch of images and averaged. Frames must be at least
    6x6 pixels.

    Returns:
        ``(per_clip, mean)``.
    """
    per_clip: list[float] = []
    for pred, ref in _paired_clips(predictions, references):
        if min(pred.shape[-2:]) < _SSIM_MIN_SIZE:
            raise ValueError(
                f"SSIM needs frames of at least {_SSIM_MIN_SIZE}x{_SSIM_MIN_SIZE} pixels, got "
                f"{tuple(pred.shape[-2:])}; disable it with ssim=False"
            )
        score = structural_similarity_index_measure(pred, ref, data_range=1.0)
        # The return type also covers (ssim, full_image) tuples, which only return_full_image gives.
        per_clip.append(float(score[0] if isinstance(score, tuple) else score))
    return per_clip, sum(per_clip) / len(per_clip)


def _feature_stats(features: ArrayLike, name: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Mean [D] and covariance [D, D] (float64) of features [N, D]."""
    array = as_tensor(features, name).double().numpy()
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be [N, D] with N >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def _sqrtm_product(
    sigma_a: npt.NDArray[Any], sigma_b: npt.NDArray[Any], eps: float
) -> npt.NDArray[Any]:
    """Real square root of sigma_a @ sigma_b, regularised when the product is singular."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(sigma_a @ sigma_b)
    if caught or not np.isfinite(root).all():
        # Few samples or rank-deficient features make the product singular; the usual FID fix
        # is to add eps to both diagonals and retry.
        logger.info("Fréchet distance: singular covariance product, adding %g to diagonals", eps)
        offset = np.eye(sigma_a.shape[0]) * eps
        root = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(root):
        imaginary = float(np.max(np.abs(np.diagonal(root).imag)))
        if imaginary > 1e-3:
            raise ValueError(f"covariance square root has imaginary component {imaginary:.3g}")
        root = root.real
    return np.asarray(root)


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID/FVD formula).

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with the matrix square root from
    ``scipy.linalg.sqrtm``.

    Args:
        features_a: Features [N, D].
        features_b: Features [M, D].
        eps: Diagonal offset used when the covariance product is singular.

    Returns:
        Distance >= 0 (tiny negative round-off is clipped to 0).
    """
    mu_a, sigma_a = _feature_stats(features_a, "features_a")
    mu_b, sigma_b = _feature_stats(features_b, "features_b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dims differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    root = _sqrtm_product(sigma_a, sigma_b, eps)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(root)
    return max(float(value), 0.0)


def extract_features(
    extractor: FeatureExtractor, clips: Clips, batch_size: int = 16
) -> torch.Tensor:
    """Runs a caller-supplied extractor over clips in batches, without gradients.

    Args:
        extractor: Maps float clips [B, T, C, H, W] in [0, 1] to features [B, D].
        clips: Clips of one shape (see the module docstring).
        batch_size: Clips per extractor call.

    Returns:
        Features [N, D].
    """
    items = _as_clips(clips, "clips")
    outputs: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = torch.stack(items[start : start + batch_size]).float()
            features = extractor(batch)
            if features.ndim != 2 or features.shape[0] != batch.shape[0]:
                raise ValueError(
                    f"feature extractor must return [B, D] with B={batch.shape[0]}, got "
                    f"{tuple(features.shape)}"
                )
            outputs.append(features.detach().cpu())
    return torch.cat(outputs)


def attribute_accuracy(
    predicted_labels: Sequence[Any] | ArrayLike, intended_labels: Sequence[Any] | ArrayLike
) -> float:
    """Fraction of generated samples whose recognised attribute equals the intended one.

    Args:
        predicted_labels: Label per generated sample, as judged by a classifier (ints or str).
        intended_labels: Label the sample was generated for.

    Returns:
        Accuracy in [0, 1].
    """
    predicted = _labels(predicted_labels)
    intended = _labels(intended_labels)
    check_same_length(predicted, intended)
    hits = sum(1 for p, i in zip(predicted, intended, strict=True) if p == i)
    return hits / len(predicted)


def _labels(values: Sequence[Any] | ArrayLike) -> list[Any]:
    return values.tolist() if isinstance(values, torch.Tensor | np.ndarray) else list(values)


def video_metrics(
    predictions: Clips,
    references: Clips,
    reconstruction: bool = True,
    ssim: bool = True,
    max_db: float | None = 100.0,
    feature_extractor: FeatureExtractor | None = None,
    batch_size: int = 16,
    predicted_labels: Sequence[Any] | None = None,
    intended_labels: Sequence[Any] | None = None,
) -> VideoResult:
    """All video metrics in one call (what ``compute_metrics("video", ...)`` runs).

    Args:
        predictions: Generated or reconstructed clips.
        references: Original / real clips.
        reconstruction: Pair clips one to one and compute PSNR (and SSIM); turn off for
            unpaired generation, where only the Fréchet distance makes sense.
        ssim: Also compute SSIM (needs frames >= 6x6).
        max_db: PSNR cap used for the mean, see :func:`video_psnr`.
        feature_extractor: When given, adds the Fréchet distance of its features.
        batch_size: Clips per extractor call.
        predicted_labels: With ``intended_labels``, adds :func:`attribute_accuracy`.
        intended_labels: See ``predicted_labels``.

    Returns:
        The requested metrics.
    """
    fields: dict[str, Any] = {}
    if reconstruction:
        fields["psnr_per_clip"], fields["psnr"] = video_psnr(predictions, references, max_db)
        if ssim:
            fields["ssim_per_clip"], fields["ssim"] = video_ssim(predictions, references)
    if feature_extractor is not None:
        fields["frechet_distance"] = frechet_distance(
            extract_features(feature_extractor, predictions, batch_size),
            extract_features(feature_extractor, references, batch_size),
        )
    if (predicted_labels is None) != (intended_labels is None):
        raise ValueError("attribute accuracy needs both predicted_labels and intended_labels")
    if predicted_labels is not None and intended_labels is not None:
        fields["attribute_accuracy"] = attribute_accuracy(predicted_labels, intended_labels)
    return VideoResult(**fields)
