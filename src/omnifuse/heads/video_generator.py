"""``video_generator`` head: text features -> discrete video codes -> frames.

Holds the two stages of text-to-video generation: a :class:`VideoTokenizer` (trained by the
``video_tokenizer`` task) and a :class:`VideoPrior` over its codes (trained by the
``video_generation`` task). Called as :class:`~omnifuse.models.MultimodalModel` calls every head,
``head(features)`` returns the greedy code grid ``[B, N]`` (one cached pass of ``N`` steps, no
pixel decoding); :meth:`VideoGenerator.generate` samples codes and decodes them to frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnifuse.config.video import TubeletViTConfig, VideoProcessorConfig
from omnifuse.config.video_generator import VideoGeneratorConfig
from omnifuse.heads.video_prior import VideoPrior
from omnifuse.layers.sampling import SamplingOptions
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.video.tokenizer import VideoTokenizer
from omnifuse.registry import HeadContext, register_head

GREEDY = SamplingOptions(temperature=0.0)


class VideoGenerator(nn.Module):
    """VQ video tokenizer + autoregressive prior conditioned on (text) features.

    Args:
        context_dim: width of the features the head reads (text encoder or fusion ``dim``).
        config: tokenizer and prior settings.
        video: the video processor config: clip length, frame size and normalisation.
    """

    def __init__(
        self, context_dim: int, config: VideoGeneratorConfig, video: VideoProcessorConfig
    ) -> None:
        super().__init__()
        self.sampling = config.sampling
        self.tokenizer = VideoTokenizer(
            config.tokenizer, video.num_frames, video.image_size, video.mean, video.std
        )
        self.prior = VideoPrior(
            config.tokenizer.codebook_size, self.tokenizer.grid, context_dim, config.prior
        )

    @property
    def num_tokens(self) -> int:
        """Codes per clip."""
        return self.tokenizer.num_tokens

    def forward(self, features: EncoderOutput, codes: Tensor | None = None) -> Tensor:
        """Teacher-forced logits ``[B, N, K]`` for flat ``codes`` ``[B, N]``; without ``codes``,
        the greedy code sequence ``[B, N]`` (long)."""
        if codes is None:
            return self.prior.sample(features, GREEDY)
        logits: Tensor = self.prior(features, codes)
        return logits

    def decode(self, codes: Tensor) -> Tensor:
        """``[B, N]`` (or ``[B, T', h, w]``) codes -> frames ``[B, T, 3, H, W]`` in ``[0, 1]``."""
        return self.tokenizer.to_unit(self.tokenizer.decode_codes(codes))

    @torch.no_grad()
    def generate(
        self,
        features: EncoderOutput,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        guidance: float | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Sample clips for the conditions in ``features`` (call in eval mode).

        Sampling settings left at None take the head's configured defaults (``sampling``).

        Args:
            features: what the head reads: ``tokens [B, S, C]``, ``mask [B, S]``.
            temperature: softmax temperature; 0 decodes greedily.
            top_k: sample among the ``top_k`` most likely codes only.
            top_p: sample from the smallest set of codes holding this much probability.
            generator: random source for reproducible samples.
            guidance: classifier-free guidance scale (1 = off; 2-3 sharpens the text's effect).
            use_cache: KV-cached decoding (same result as recomputing every step).

        Returns:
            ``[B, T, 3, H, W]`` float frames in ``[0, 1]``.
        """
        return self.decode(
            self.prior.sample(
                features, self.options(temperature, top_k, top_p, guidance), generator, use_cache
            )
        )

    def options(
        self,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance: float | None = None,
    ) -> SamplingOptions:
        """Sampling options: the given values, the configured defaults for the others."""
        default = self.sampling
        return SamplingOptions(
            default.temperature if temperature is None else temperature,
            default.top_k if top_k is None else top_k,
            default.top_p if top_p is None else top_p,
            default.guidance if guidance is None else guidance,
        )


def video_processor_config(context: HeadContext, head_type: str) -> VideoProcessorConfig:
    """The model's video processor config, which fixes the clips the head reads and writes.

    Raises:
        ValueError: the model has no video encoder.
    """
    video = context.model.encoders.video
    if video is None:
        configured = ", ".join(context.model.encoders.configured())
        raise ValueError(
            f"a {head_type!r} head takes its clip size and normalisation from the video "
            f"processor; configure model.encoders.video (configured: {configured})"
        )
    if not isinstance(video, TubeletViTConfig):
        raise ValueError(
            f"a {head_type!r} head needs the native video encoder (type 'tubelet_vit'), whose "
            f"processor fixes the clip size; model.encoders.video has type {video.type!r}"
        )
    return video.processor


@register_head(
    "video_generator",
    "Text-to-video: VQ video tokenizer + autoregressive code prior with KV-cached sampling.",
    context=True,
)
def build_video_generator(config: VideoGeneratorConfig, context: HeadContext) -> nn.Module:
    """Registry builder: clip geometry and mean/std come from the video processor config."""
    return VideoGenerator(
        context.in_dim, config, video_processor_config(context, "video_generator")
    )
