"""Shared fixtures: seeded RNG, writers of real media files, a tiny local HF BERT and ViT."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per xdist worker: two workers x two threads on two cores thrash.
    torch.set_num_threads(1)

TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *"abcdefghijklmnopqrstuvwxyz0123456789.,!?'",
    "the",
    "a",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "moves",
    "left",
    "right",
    "##s",
    "##ed",
    "##ing",
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_png(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """A real RGB PNG with a coloured rectangle on noise."""
    from PIL import Image

    gen = np.random.default_rng(seed)
    pixels = gen.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    pixels[5:20, 5:25] = (220, 30, 30)
    Image.fromarray(pixels).save(path)
    return path


def write_wav(
    path: Path, seconds: float = 0.5, sample_rate: int = 22050, freq: float = 440.0
) -> Path:
    """A real 16-bit WAV: a tone with a little noise."""
    import soundfile as sf

    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * math.pi * freq * t) + 0.01 * np.random.default_rng(0).standard_normal(
        t.size
    )
    sf.write(path, wave.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def write_mp4(path: Path, frames: int = 12, size: int = 32, fps: int = 12) -> Path:
    """A real H.264 MP4 of a square moving right."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.zeros((size, size, 3), dtype=np.uint8)
            x = (i * 2) % (size - 8)
            img[10:18, x : x + 8] = (255, 200, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Callable[..., Path]]:
    """Factories writing real files into ``tmp_path``: ``media['png'](name)`` etc."""
    return {
        "png": lambda name="img.png", **kw: write_png(tmp_path / name, **kw),
        "wav": lambda name="clip.wav", **kw: write_wav(tmp_path / name, **kw),
        "mp4": lambda name="clip.mp4", **kw: write_mp4(tmp_path / name, **kw),
    }


@pytest.fixture(scope="session")
def tiny_hf_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer BERT (dim 32) with a WordPiece tokenizer, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny_bert")
    (out / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    BertTokenizerFast(vocab=str(out / "vocab.txt")).save_pretrained(out)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).eval().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_hf_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer ViT (dim 32, 32x32 images, 8x8 patches) saved like a hub model."""
    from transformers import ViTConfig, ViTModel

    out = tmp_path_factory.mktemp("tiny_vit")
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_channels=3,
    )
    torch.manual_seed(0)
    ViTModel(config, add_pooling_layer=False).eval().save_pretrained(out)
    return out
