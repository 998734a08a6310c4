"""Shared helpers of the text-to-video tests: tiny configs and synthetic moving-square clips."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from omnifuse.config.fusion import ConcatFusionConfig
from omnifuse.config.model import EncodersConfig, ModelConfig
from omnifuse.config.text import TextTransformerConfig, TokenizerConfig
from omnifuse.config.video import TubeletViTConfig, VideoProcessorConfig
from omnifuse.config.video_generator import (
    VideoGeneratorConfig,
    VideoPriorConfig,
    VideoTokenizerConfig,
)

FRAMES, SIZE = 4, 16
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
COLOURS = {"red": (230, 40, 40), "blue": (40, 60, 230), "green": (40, 200, 60)}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one thread: tiny convolutions are an order of magnitude slower on two OpenMP
    threads when the two cores are shared with other processes (no effect on results)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_tokenizer_config(**overrides: object) -> VideoTokenizerConfig:
    """Two stride-2 stages and pairs of frames: a 4 x 16 x 16 clip -> 2 x 4 x 4 = 32 codes."""
    fields: dict[str, object] = {
        "stage_dims": [8, 16],
        "temporal_downsample": 2,
        "codebook_size": 16,
        "code_dim": 8,
        "num_res_blocks": 1,
        **overrides,
    }
    return VideoTokenizerConfig.model_validate(fields)


def tiny_generator_config() -> VideoGeneratorConfig:
    return VideoGeneratorConfig(
        tokenizer=tiny_tokenizer_config(),
        prior=VideoPriorConfig(dim=32, num_layers=1, num_heads=2),
    )


def tiny_model_config(source: str = "text") -> ModelConfig:
    """Byte-level text + tiny video encoder (its processor fixes the clips) + the generator."""
    encoders = EncodersConfig(
        text=TextTransformerConfig(
            dim=32, num_layers=1, num_heads=2, tokenizer=TokenizerConfig(max_length=32)
        ),
        video=TubeletViTConfig(
            dim=32,
            num_layers=1,
            num_heads=2,
            patch_size=8,
            tubelet_size=2,
            processor=VideoProcessorConfig(num_frames=FRAMES, image_size=SIZE, mean=MEAN, std=STD),
        ),
    )
    head = tiny_generator_config().model_copy(update={"source": source})
    return ModelConfig(
        encoders=encoders,
        fusion=ConcatFusionConfig(dim=32, num_layers=1, num_heads=2),
        heads={"generator": head},
    )


def moving_square(
    colour: str = "red",
    direction: int = 1,
    start: int = 2,
    frames: int = FRAMES,
    size: int = SIZE,
    background: int = 220,
) -> np.ndarray:
    """uint8 ``[T, S, S, 3]``: a 5-pixel square moving 2 pixels per frame along x."""
    clip = np.full((frames, size, size, 3), background, dtype=np.uint8)
    for t in range(frames):
        x = start + direction * 2 * t
        clip[t, 5:10, x : x + 5] = COLOURS[colour]
    return clip


def normalise(clips: np.ndarray) -> torch.Tensor:
    """uint8 ``[B, T, S, S, 3]`` -> ``[B, T, 3, S, S]`` normalised with :data:`MEAN`/:data:`STD`."""
    unit = torch.from_numpy(clips).float().div(255.0).permute(0, 1, 4, 2, 3)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return (unit - mean) / std


def square_clips() -> torch.Tensor:
    """Four distinct normalised clips ``[4, T, 3, S, S]`` (colour x direction)."""
    raw = [
        moving_square("red", 1, 1),
        moving_square("blue", -1, 10),
        moving_square("green", 1, 3, background=180),
        moving_square("red", -1, 9, background=240),
    ]
    return normalise(np.stack(raw))
