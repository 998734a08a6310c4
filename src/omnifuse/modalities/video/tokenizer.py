"""VQ video tokenizer: clip ``[B, T, 3, H, W]`` <-> grid of discrete codes ``[B, T', h, w]``.

A convolutional encoder downsamples every frame by ``2 ** len(stage_dims)`` per side, then
stacks ``temporal_downsample`` consecutive frames into one vector per grid cell (2D kernels are
several times faster than 3D ones on CPU, and shapesworld's motion needs no more). Every grid
vector is replaced by its nearest codebook entry (straight-through gradient, VQ-VAE) and a
mirrored decoder rebuilds the clip. The codebook learns by exponential moving averages of the
vectors assigned to each code (VQ-VAE-2), not by gradient, and codes that fall out of use are
moved onto random encoder outputs (Jukebox's restarts), which keeps most of the codebook alive on
small datasets.

The codebook and its statistics are plain buffers, so they are saved with the model's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.config.video_generator import VideoTokenizerConfig
from omnifuse.distributed import is_distributed
from omnifuse.modalities.video.io import denormalize


class QuantizerOutput(NamedTuple):
    """What :class:`VectorQuantizer` returns for ``N`` vectors.

    Attributes:
        quantized: ``[N, D]`` codebook vectors with the straight-through gradient to the input.
        codes: ``[N]`` long indices of the nearest codes.
        commitment_loss: scalar mean squared distance of the valid inputs to their codes.
        perplexity: detached scalar ``exp(entropy)`` of the valid codes' histogram (1 = one code
            used, K = all used equally).
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates and dead-code restarts.

    Args:
        codebook_size: number of codes ``K``.
        code_dim: width ``D`` of a code.
        decay: moving-average decay of the per-code counts and sums.
        restart_threshold: codes whose average count per batch falls below it are restarted.
        eps: Laplace smoothing of the counts (keeps unused codes finite).
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        decay: float = 0.99,
        restart_threshold: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.codebook_size, self.decay = codebook_size, decay
        self.restart_threshold, self.eps = restart_threshold, eps
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())
        # The first training batch seeds the codebook with encoder outputs (data-dependent init).
        self.register_buffer("initialized", torch.tensor(False))
        self.codebook: Tensor
        self.cluster_size: Tensor
        self.embed_sum: Tensor
        self.initialized: Tensor

    def lookup(self, codes: Tensor) -> Tensor:
        """``[...]`` codes -> ``[..., D]`` code vectors."""
        return F.embedding(codes, self.codebook)

    def nearest(self, vectors: Tensor) -> Tensor:
        """``[N, D]`` -> ``[N]`` index of the closest code (squared Euclidean distance)."""
        book = self.codebook.to(vectors.dtype)
        distances = (
            vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ book.T + book.pow(2).sum(1)
        )  # (N, K)
        return distances.argmin(dim=1)

    def forward(self, vectors: Tensor, valid: Tensor | None = None) -> QuantizerOutput:
        """Quantise ``[N, D]`` vectors; in training mode also update the codebook.

        Args:
            vectors: encoder outputs.
            valid: ``[N]`` bool; only True rows update the codebook and enter the losses
                (e.g. rows from padding frames do not).
        """
        valid = torch.ones_like(vectors[:, 0], dtype=torch.bool) if valid is None else valid
        if self.training:
            self._update(vectors.detach().float()[valid])
        codes = self.nearest(vectors.detach())
        quantized = self.lookup(codes).to(vectors.dtype)
        weight = valid.to(vectors.dtype)[:, None]
        squared = (vectors - quantized.detach()).pow(2) * weight
        commitment = squared.sum() / (weight.sum() * vectors.shape[1]).clamp(min=1.0)
        straight_through = vectors + (quantized - vectors).detach()
        return QuantizerOutput(straight_through, codes, commitment, self.perplexity(codes[valid]))

    def perplexity(self, codes: Tensor) -> Tensor:
        """``exp`` of the entropy of the histogram of ``codes`` ``[N]`` (detached scalar)."""
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        probs = counts / counts.sum().clamp(min=1.0)
        entropy = -(probs * probs.clamp(min=1e-10).log()).sum()
        return entropy.exp().detach()

    @torch.no_grad()
    def _update(self, vectors: Tensor) -> None:
        """One EMA step of counts and sums from ``[N, D]`` valid vectors, then restarts."""
        if not bool(self.initialized):
            self._seed(vectors)
        codes = self.nearest(vectors)
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, vectors)
        if is_distributed():  # every rank must see the same statistics to keep one codebook
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._restart(vectors)

    def _random_rows(self, vectors: Tensor, count: int) -> Tensor:
        """``count`` rows drawn from ``vectors`` (with replacement when there are too few)."""
        if vectors.shape[0] >= count:
            index = torch.randperm(vectors.shape[0], device=vectors.device)[:count]
        else:
            index = torch.randint(vectors.shape[0], (count,), device=vectors.device)
        return vectors[index]

    def _seed(self, vectors: Tensor) -> None:
        if vectors.shape[0] == 0:
            return
        self.codebook.copy_(self._random_rows(vectors, self.codebook_size))
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)
        self._broadcast()

    def _restart(self, vectors: Tensor) -> None:
        """Move codes used less than ``restart_threshold`` times per batch onto random inputs."""
        dead = self.cluster_size < self.restart_threshold
        count = int(dead.sum())
        if count == 0 or vectors.shape[0] == 0:
            return
        fresh = self._random_rows(vectors, count)
        self.codebook[dead] = fresh
        self.embed_sum[dead] = fresh * self.restart_threshold
        self.cluster_size[dead] = self.restart_threshold
        self._broadcast()

    def _broadcast(self) -> None:
        """Ranks draw different random rows; rank 0's choice wins."""
        if is_distributed():
            for buffer in (self.codebook, self.embed_sum, self.cluster_size, self.initialized):
                dist.broadcast(buffer, src=0)


def _norm_act(dim: int) -> list[nn.Module]:
    """GroupNorm (the largest of 8, 4, 2, 1 groups dividing ``dim``) then SiLU."""
    groups = next(g for g in (8, 4, 2, 1) if dim % g == 0)
    return [nn.GroupNorm(groups, dim), nn.SiLU()]


class ResBlock(nn.Module):
    """``x + conv(act(norm(conv(act(norm(x))))))`` with size-preserving 3x3 convolutions."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_norm_act(dim),
            nn.Conv2d(dim, dim, 3, padding=1),
            *_norm_act(dim),
            nn.Conv2d(dim, dim, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.net(x)
        return out


class FrameGroups(nn.Module):
    """Regroup frames between per-frame maps ``[B * T, C, h, w]`` and per-code maps
    ``[B * T', group * C, h, w]`` (``group`` consecutive frames stacked along channels)."""

    def __init__(self, group: int, merge: bool) -> None:
        super().__init__()
        self.group, self.merge = group, merge

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if self.merge:
            return x.reshape(n // self.group, self.group * c, h, w)
        return x.reshape(n * self.group, c // self.group, h, w)


def build_encoder(config: VideoTokenizerConfig, channels: int = 3) -> nn.Sequential:
    """Frames ``[B * T, C, H, W]`` -> code-grid vectors ``[B * T', code_dim, h, w]``.

    Space shrinks frame by frame (stride-2 convolutions, cheap 2D kernels); time shrinks once, at
    the grid, where a 3x3 convolution mixes each group's stacked frames into one vector.
    GroupNorm after every stage: without it a small model takes several times more steps to get
    past reconstructing only the background.
    """
    layers: list[nn.Module] = []
    width, group = channels, config.temporal_downsample
    for dim in config.stage_dims:
        layers += [nn.Conv2d(width, dim, 4, stride=2, padding=1), *_norm_act(dim)]
        width = dim
    layers += [FrameGroups(group, merge=True), nn.Conv2d(group * width, width, 3, padding=1)]
    layers += [ResBlock(width) for _ in range(config.num_res_blocks)]
    layers += [*_norm_act(width), nn.Conv2d(width, config.code_dim, 1)]
    return nn.Sequential(*layers)


def build_decoder(config: VideoTokenizerConfig, channels: int = 3) -> nn.Sequential:
    """Code-grid vectors ``[B * T', code_dim, h, w]`` -> frames ``[B * T, C, H, W]``."""
    dims, group = config.stage_dims, config.temporal_downsample
    layers: list[nn.Module] = [nn.Conv2d(config.code_dim, dims[-1], 1)]
    layers += [ResBlock(dims[-1]) for _ in range(config.num_res_blocks)]
    layers += [*_norm_act(dims[-1]), nn.Conv2d(dims[-1], group * dims[-1], 3, padding=1)]
    layers.append(FrameGroups(group, merge=False))
    for i in reversed(range(len(dims))):
        out = dims[max(i - 1, 0)]
        layers += [*_norm_act(dims[i]), nn.ConvTranspose2d(dims[i], out, 4, stride=2, padding=1)]
    layers += [*_norm_act(dims[0]), nn.Conv2d(dims[0], channels, 3, padding=1)]
    return nn.Sequential(*layers)


class VQOutput(NamedTuple):
    """What :meth:`VideoTokenizer.forward` returns.

    Attributes:
        reconstruction: ``[B, T, C, H, W]`` decoded clip, in the processor's normalised space.
        codes: ``[B, T', h, w]`` long code grid.
        commitment_loss: scalar, see :class:`QuantizerOutput`.
        perplexity: detached scalar codebook perplexity of the valid codes.
    """

    reconstruction: Tensor
    codes: Tensor
    commitment_loss: Tensor
    perplexity: Tensor


class VideoTokenizer(nn.Module):
    """Clip <-> discrete code grid (a VQ-VAE over space and time).

    Args:
        config: architecture and codebook settings.
        num_frames: ``T`` of every clip (the video processor's ``num_frames``).
        image_size: ``H = W`` of every frame (the processor's ``image_size``).
        mean: the processor's per-channel normalisation mean.
        std: the processor's per-channel normalisation std.
        channels: ``C`` (3 for RGB).
    """

    def __init__(
        self,
        config: VideoTokenizerConfig,
        num_frames: int,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels: int = 3,
    ) -> None:
        super().__init__()
        down, t_down = config.spatial_downsample, config.temporal_downsample
        if image_size % down or num_frames % t_down:
            raise ValueError(
                f"clips of {num_frames} frames of {image_size}x{image_size} do not tile into "
                f"codes of {t_down} frames x {down}x{down} pixels; pick image_size a multiple "
                f"of {down} and num_frames a multiple of {t_down}"
            )
        self.num_frames, self.image_size, self.channels = num_frames, image_size, channels
        self.temporal_downsample = t_down
        self.mean, self.std = tuple(mean), tuple(std)
        self.grid = (num_frames // t_down, image_size // down, image_size // down)
        self.codebook_size = config.codebook_size
        self.encoder = build_encoder(config, channels)
        self.quantizer = VectorQuantizer(
            config.codebook_size, config.code_dim, config.ema_decay, config.restart_threshold
        )
        self.decoder = build_decoder(config, channels)

    @property
    def num_tokens(self) -> int:
        """Codes per clip, ``N = T' * h * w``."""
        t, h, w = self.grid
        return t * h * w

    def _check(self, pixel_values: Tensor) -> None:
        expected = (self.num_frames, self.channels, self.image_size, self.image_size)
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values has shape {tuple(pixel_values.shape)}; expected [B, "
                f"{', '.join(map(str, expected))}] (the video processor's num_frames/image_size)"
            )

    def token_mask(self, frame_mask: Tensor) -> Tensor:
        """``[B, T]`` frame mask -> ``[B, T', h, w]``: a code is valid if any of its frames is."""
        b = frame_mask.shape[0]
        t, h, w = self.grid
        steps = frame_mask.bool().view(b, t, self.temporal_downsample).any(dim=-1)  # (B, T')
        return steps[:, :, None, None].expand(b, t, h, w)

    def latents(self, pixel_values: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``[B, T, C, H, W] -> [B, T', h, w, D]`` continuous encoder outputs."""
        self._check(pixel_values)
        if frame_mask is not None:  # padding frames must not leak into partly valid codes
            pixel_values = pixel_values * frame_mask.to(pixel_values.dtype)[:, :, None, None, None]
        b = pixel_values.shape[0]
        grid: Tensor = self.encoder(pixel_values.flatten(0, 1))  # (B * T', D, h, w)
        return grid.view(b, self.grid[0], *grid.shape[1:]).permute(0, 1, 3, 4, 2)

    def forward(self, pixel_values: Tensor, frame_mask: Tensor | None = None) -> VQOutput:
        """Encode, quantise (updating the codebook in training mode) and decode.

        Args:
            pixel_values: ``[B, T, C, H, W]`` normalised clips.
            frame_mask: ``[B, T]`` bool, True at real frames (default: all).
        """
        z = self.latents(pixel_values, frame_mask)  # (B, T', h, w, D)
        valid = None if frame_mask is None else self.token_mask(frame_mask).reshape(-1)
        out = self.quantizer(z.reshape(-1, z.shape[-1]), valid)
        quantized = out.quantized.view(z.shape)
        codes = out.codes.view(z.shape[:-1])
        return VQOutput(self._decode(quantized), codes, out.commitment_loss, out.perplexity)

    def encode_video(self, pixel_values: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``[B, T, C, H, W]`` normalised clips -> ``[B, T', h, w]`` long codes (no updates)."""
        z = self.latents(pixel_values, frame_mask)
        return self.quantizer.nearest(z.reshape(-1, z.shape[-1])).view(z.shape[:-1])

    def decode_codes(self, codes: Tensor) -> Tensor:
        """``[B, T', h, w]`` or flat ``[B, N]`` codes -> ``[B, T, C, H, W]`` normalised clips."""
        if codes.ndim == 2 and codes.shape[1] == self.num_tokens:
            codes = codes.view(codes.shape[0], *self.grid)
        if codes.ndim != 4 or tuple(codes.shape[1:]) != self.grid:
            raise ValueError(
                f"codes have shape {tuple(codes.shape)}; expected [B, {self.num_tokens}] or "
                f"[B, {', '.join(map(str, self.grid))}]"
            )
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); got values in [{low}, {high}]"
            )
        return self._decode(self.quantizer.lookup(codes))

    def _decode(self, quantized: Tensor) -> Tensor:
        """``[B, T', h, w, D] -> [B, T, C, H, W]``."""
        b = quantized.shape[0]
        frames: Tensor = self.decoder(quantized.permute(0, 1, 4, 2, 3).flatten(0, 1))
        return frames.view(b, self.num_frames, *frames.shape[1:])  # (B, T, C, H, W)

    def to_unit(self, pixel_values: Tensor) -> Tensor:
        """Normalised ``[..., C, H, W]`` -> ``[0, 1]`` with the processor's mean/std."""
        return denormalize(pixel_values, self.mean, self.std)
