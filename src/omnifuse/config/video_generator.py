"""Text-to-video generator head configs: a VQ video tokenizer plus an autoregressive prior.

The head holds a VQ video tokenizer (clip -> grid of discrete codes -> clip) and an
autoregressive prior over those codes that cross-attends to the text features::

    heads:
      generator: {type: video_generator, source: text,
                  prior: {dim: 128, num_layers: 4, num_heads: 4}}
    tasks:
      tokenizer: {type: video_tokenizer, head: generator}     # stage 1
      generation: {type: video_generation, head: generator}   # stage 2 (tokenizer frozen)

Clip size (``num_frames``, ``image_size``) and normalisation come from the video encoder's
processor (``model.encoders.video.processor``), which also turns the target videos into
tensors, so the model needs a video encoder configured even though the head never reads it.
The two task configs live in :mod:`omnifuse.config.tasks` with the other tasks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from omnifuse.config.base import StrictModel, TransformerDims


class VideoTokenizerConfig(StrictModel):
    """VQ-VAE over clips: per-frame conv encoder, frames grouped in time, nearest codebook entry,
    mirrored decoder.

    Every entry of ``stage_dims`` is one stride-2 stage, so frames shrink by
    ``2 ** len(stage_dims)`` per side; then ``temporal_downsample`` consecutive frames share one
    code. An 8 x 48 x 48 clip with three stages and ``temporal_downsample=4`` becomes
    2 x 6 x 6 = 72 codes.
    """

    stage_dims: list[int] = Field(
        default=[32, 64, 64], min_length=1, description="Width of each stride-2 stage."
    )
    temporal_downsample: int = Field(
        default=4, gt=0, description="Consecutive frames per code (must divide num_frames)."
    )
    num_res_blocks: int = Field(default=1, ge=0, description="3x3 residual blocks at the grid.")
    codebook_size: int = Field(default=512, gt=1, description="Number of codes K.")
    code_dim: int = Field(default=32, gt=0, description="Width of a code vector.")
    ema_decay: float = Field(
        default=0.99, gt=0.0, lt=1.0, description="Decay of the codebook's moving averages."
    )
    restart_threshold: float = Field(
        default=1.0,
        ge=0.0,
        description="A code whose moving-average use falls below this many vectors per batch is "
        "moved onto a random encoder output (0 = never).",
    )

    @model_validator(mode="after")
    def _positive_dims(self) -> VideoTokenizerConfig:
        if any(d <= 0 for d in self.stage_dims):
            raise ValueError(f"stage_dims={self.stage_dims} must all be positive")
        return self

    @property
    def spatial_downsample(self) -> int:
        """Pixels per code along height and width."""
        return int(2 ** len(self.stage_dims))


class VideoPriorConfig(TransformerDims):
    """Causal Transformer over the flattened code grid, cross-attending to the text features."""

    dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    norm_eps: float = Field(default=1e-5, gt=0.0)


class VideoSamplingConfig(StrictModel):
    """Default sampling of :meth:`~omnifuse.heads.video_generator.VideoGenerator.generate`.

    Saved with the model, so ``omnifuse predict`` and ``omnifuse eval`` sample a run the way it
    was tuned; arguments passed to ``generate`` override these.
    """

    temperature: float = Field(default=1.0, ge=0.0, description="Softmax temperature (0 = greedy).")
    top_k: int | None = Field(default=None, ge=1, description="Sample among the k likeliest codes.")
    top_p: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Nucleus: smallest set holding this mass."
    )
    guidance: float = Field(
        default=1.0, ge=0.0, description="Classifier-free guidance scale (1 = off)."
    )


class VideoGeneratorConfig(StrictModel):
    """Text-to-video head: a VQ tokenizer plus an autoregressive prior over its codes.

    Called as every head is (``model(batch)``), it returns the greedy code grid ``[B, N]``;
    :meth:`~omnifuse.heads.video_generator.VideoGenerator.generate` samples and decodes frames.
    """

    type: Literal["video_generator"] = "video_generator"
    source: str = Field(
        default="text",
        description="'text' (text encoder tokens) or 'fused' (fed text-only inputs).",
    )
    tokenizer: VideoTokenizerConfig = Field(default_factory=VideoTokenizerConfig)
    prior: VideoPriorConfig = Field(default_factory=VideoPriorConfig)
    sampling: VideoSamplingConfig = Field(default_factory=VideoSamplingConfig)
