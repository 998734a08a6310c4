"""``whisper_decoder`` head + ``captioning`` task: a pretrained Whisper (encoder + decoder) for
ASR through the production config -> registry path.

Tiny random Whisper directories come from ``omnifuse convert whisper-ct2``'s converter
(``tests/conftest.py::save_tiny_whisper_asr``); the real tiny.en is converted once per session
(``tests/conftest.py::tiny_en_dir``, shared with ``tests/convert/test_whisper_ct2.py``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, WhisperForConditionalGeneration

from omnifuse.config import RunConfig, validate_config
from omnifuse.heads import WhisperDecoder
from omnifuse.heads.decoding import DecodingOptions, decode
from omnifuse.inference import Pipeline
from omnifuse.metrics import speech_metrics
from omnifuse.models import MultimodalModel, Processors, build_model, load, save
from omnifuse.tasks import CaptioningTask, build_tasks
from omnifuse.tasks.base import PredictOptions
from omnifuse.types import Batch

TRANSCRIPTS = ["hi there", "go left"]


def asr_run(path: Path, **task: Any) -> RunConfig:
    """An ASR run: the audio ``hf`` encoder and the ``whisper_decoder`` of one directory."""
    return validate_config(
        {
            "model": {
                "encoders": {"audio": {"type": "hf", "path": str(path)}},
                "heads": {"asr": {"type": "whisper_decoder", "path": str(path), "max_length": 24}},
            },
            "tasks": {
                "asr": {
                    "type": "captioning",
                    "head": "asr",
                    "target": "transcript",
                    "inputs": ["audio"],
                    **task,
                }
            },
        }
    )


def build(path: Path) -> tuple[MultimodalModel, Processors, CaptioningTask, RunConfig]:
    run = asr_run(path)
    model, processors = build_model(run.model)
    task = build_tasks(run, model, processors)["asr"]
    assert isinstance(task, CaptioningTask)
    return model, processors, task, run


def audio_batch(processors: Processors, media: dict[str, Callable[..., Path]]) -> Batch:
    clips = [media["wav"](f"u{i}.wav", seconds=0.4 + 0.3 * i, freq=300.0 + 500 * i) for i in (0, 1)]
    return {
        "inputs": {"audio": processors["audio"]([str(c) for c in clips])},
        "targets": {"transcript": list(TRANSCRIPTS)},
    }


def test_targets_use_the_whisper_tokenizer(tiny_whisper_asr: Path) -> None:
    _, _, task, _ = build(tiny_whisper_asr)
    assert task.kind == "speech" and task.tokenizer.bos_id == 257 and task.tokenizer.eos_id == 256
    ids, mask = task.tokenize(["hi"], torch.device("cpu"))
    # Byte-level BPE without merges: " hi" is three byte tokens, then <|endoftext|>.
    assert ids[0].tolist() == [*task.tokenizer.encode("hi"), 256] and len(ids[0]) == 4
    assert task.tokenizer.decode(ids[0].tolist()) == "hi" and bool(mask.all())


def test_greedy_equals_transformers_generate(
    tiny_whisper_asr: Path, media: dict[str, Callable[..., Path]]
) -> None:
    whisper = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_asr).eval()
    model, processors, _, _ = build(tiny_whisper_asr)
    model.eval()
    batch = audio_batch(processors, media)
    head = model.heads["asr"]
    assert isinstance(head, WhisperDecoder)
    with torch.no_grad():
        features = model.features("asr", model.encode(batch["inputs"]))
        ours = decode(head, features, DecodingOptions(max_length=20)).tokens
        uncached = decode(head, features, DecodingOptions(max_length=20, use_cache=False)).tokens
        config = GenerationConfig.from_pretrained(tiny_whisper_asr)
        config.max_new_tokens = 20
        theirs = whisper.generate(
            batch["inputs"]["audio"]["features"].transpose(1, 2), generation_config=config
        )
    assert ours.tolist() == theirs.tolist()
    assert uncached.tolist() == ours.tolist()


def test_beam_search_runs_and_beam_one_is_greedy(
    tiny_whisper_asr: Path, media: dict[str, Callable[..., Path]]
) -> None:
    model, processors, _, run = build(tiny_whisper_asr)
    model.eval()
    batch = audio_batch(processors, media)
    with torch.no_grad():
        features = model.features("asr", model.encode(batch["inputs"]))
        greedy = decode(model.heads["asr"], features, DecodingOptions(max_length=10))  # type: ignore[arg-type]
        one = decode(model.heads["asr"], features, DecodingOptions("beam", 1, max_length=10))  # type: ignore[arg-type]
        beam = decode(model.heads["asr"], features, DecodingOptions("beam", 3, max_length=10))  # type: ignore[arg-type]
    assert one.tokens.tolist() == greedy.tokens.tolist()
    assert beam.tokens.shape[0] == 2 and torch.isfinite(beam.scores).all()
    pipe = Pipeline(model, processors, run)
    texts = pipe.transcribe([str(media["wav"]("p.wav"))], DecodingOptions("beam", 2, max_length=6))
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_overfits_two_utterances_and_survives_save_and_load(
    tmp_path: Path, tiny_whisper_asr: Path, media: dict[str, Callable[..., Path]]
) -> None:
    model, processors, task, run = build(tiny_whisper_asr)
    batch = audio_batch(processors, media)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss = task(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < losses[0] / 5
    model.eval()
    predicted = [p["text"] for p in task.predict(model, batch["inputs"], PredictOptions())]
    assert predicted == TRANSCRIPTS
    loaded = load(save(tmp_path / "model", model, processors, run))
    again = [p["text"] for p in task.predict(loaded.model, batch["inputs"], PredictOptions())]
    assert again == predicted
    assert (tmp_path / "model" / "audio" / "config.json").is_file()


def test_real_tiny_en_transcribes_a_flite_sentence(tiny_en_dir: Path, tmp_path: Path) -> None:
    sentence = "Please turn off the kitchen lights before you go to bed."
    wav = tmp_path / "speech.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", sentence, "-o", str(wav)], check=True)
    model, processors, task, run = build(tiny_en_dir)
    texts = Pipeline(model.eval(), processors, run).transcribe([str(wav)])
    wer = speech_metrics(texts, [sentence]).wer
    print(f"tiny.en via Pipeline.transcribe: {texts[0]!r} WER {wer:.3f}")
    assert wer <= 0.1, texts[0]
    # Greedy parity with transformers on real weights and speech, token for token.
    batch = processors["audio"]([str(wav)])
    with torch.no_grad():
        ours = task.generate(model, {"audio": batch}, PredictOptions())
        whisper = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
        theirs = whisper.generate(batch["features"].transpose(1, 2), max_new_tokens=64)
    eos = task.tokenizer.eos_id  # transformers drops a single row's final EOS; compare text ids
    assert [t for t in ours[0].tolist() if t != eos] == [t for t in theirs[0].tolist() if t != eos]
    assert len([t for t in ours[0].tolist() if t != eos]) > 5


def test_input_window_logits_do_not_depend_on_the_batch(
    tiny_whisper_asr: Path, media: dict[str, Callable[..., Path]]
) -> None:
    """With ``window: input`` cross-attention masks the padding: a clip's teacher-forced logits
    (and so its loss) are the same alone and batched beside a longer clip."""
    run = asr_run(tiny_whisper_asr)
    model_config = run.model.model_copy(deep=True)
    assert model_config.encoders.audio is not None
    model_config.encoders.audio.window = "input"  # type: ignore[union-attr]
    model, processors = build_model(model_config)
    head = model.heads["asr"]
    assert isinstance(head, WhisperDecoder) and head.mask_context
    model.eval()
    clips = [str(media["wav"](f"c{i}.wav", seconds=0.3 + 0.4 * i)) for i in (0, 1)]
    ids = torch.tensor([head.tokenizer.encode_for_model(t, 6)[:6] for t in ("hi there", "go left")])
    with torch.no_grad():
        both = processors["audio"](clips)
        together = head(model.features("asr", model.encode({"audio": both})), ids)
        for i, clip in enumerate(clips):
            one = processors["audio"]([clip])
            assert one["features"].shape[1] < both["features"].shape[1] or i == 1
            alone = head(model.features("asr", model.encode({"audio": one})), ids[i : i + 1])
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=0)
