"""Speech: short spoken English sentences with exact transcripts, from flite and espeak-ng voices.

Sentences come from a small template grammar (everyday vocabulary, numbers as words). Whole
voices are held out: test voices (flite ``rms`` and three espeak-ng variants) and validation
voices (two other espeak-ng variants) never speak in the training split. Half of the test
split is flite speech, which a pocketsphinx baseline can recognise (it cannot recognise espeak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.datasets import tts
from omnifuse.datasets._common import (
    Row,
    check_options,
    contiguous_splits,
    default_workers,
    field,
    generator_entry,
    parallel_map,
    prepare_out,
    require_program,
    sample_rng,
    write_card,
    write_manifests,
)

NAME = "speech"
VERSION = "1.0"
DEFAULT_SIZE = 2000
OPTIONS = ("workers",)
DESCRIPTION = (
    "Short English sentences (template grammar) spoken by flite and espeak-ng voices with varied "
    "rate and pitch: speech recognition and audio-text retrieval. Whole voices are held out: the "
    "val and test voices never occur in train (see generator.voices)."
)
LICENSE = "CC0-1.0 (generated; speech by espeak-ng and CMU flite: their output is unrestricted)"


def _espeak(accents: Sequence[str], variants: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"espeak:{a}+{v}" for a in accents for v in variants)


# Split -> (flite voices, share of flite speech, espeak voices). Disjoint across splits: kal
# (8 kHz kal16) is left out, and held-out espeak voices use variants training never hears.
VOICES: dict[str, tuple[tuple[str, ...], float, tuple[str, ...]]] = {
    "train": (
        ("flite:kal16", "flite:slt", "flite:awb"),
        0.3,
        _espeak(tts.ESPEAK_ACCENTS, ("m1", "m2", "m3", "m5", "m6", "f1", "f2", "f3", "klatt")),
    ),
    "val": ((), 0.0, _espeak(("en", "en-us"), ("m7", "f5"))),
    "test": (("flite:rms",), 0.5, _espeak(("en", "en-us", "en-gb-x-rp"), ("m4", "f4", "klatt2"))),
}

_WORDS = {
    "subject": (
        "my sister",
        "my brother",
        "the teacher",
        "our neighbour",
        "the old man",
        "a young girl",
        "the doctor",
        "my friend",
        "the children",
        "the farmer",
        "the pilot",
        "her father",
        "his mother",
        "the students",
    ),
    "verb": (
        "bought",
        "found",
        "painted",
        "carried",
        "lost",
        "opened",
        "cleaned",
        "fixed",
        "sold",
        "borrowed",
        "dropped",
        "washed",
        "moved",
        "watched",
    ),
    "object": (
        "the red car",
        "a small box",
        "three green apples",
        "the old map",
        "a new bicycle",
        "the heavy door",
        "two blue chairs",
        "the kitchen window",
        "a warm coat",
        "the wooden table",
        "some fresh bread",
        "the broken radio",
    ),
    "place": (
        "at the market",
        "in the garden",
        "near the river",
        "by the station",
        "in the kitchen",
        "at the school",
        "on the bridge",
        "behind the house",
        "in the library",
        "at the beach",
    ),
    "time": (
        "on monday",
        "this morning",
        "last night",
        "after lunch",
        "in the evening",
        "yesterday",
        "on friday",
        "before dinner",
        "at noon",
        "every sunday",
    ),
    "weather": ("cold", "warm", "sunny", "rainy", "windy", "cloudy"),
    "city": ("boston", "paris", "london", "chicago", "denver", "seattle", "madrid", "berlin"),
    "clock": ("seven o'clock", "half past nine", "ten fifteen", "a quarter to six", "eight thirty"),
    "number": ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"),
    "plural": ("cats", "dogs", "books", "pencils", "cousins", "tickets", "windows", "bottles"),
    "building": ("post office", "bank", "museum", "hospital", "hotel", "train station"),
    "drink": ("tea", "coffee", "milk", "water", "juice"),
    "quality": ("nearest", "old", "new", "big", "small", "main"),
    "imperative": ("close", "open", "clean", "check", "lock"),
    "thing": ("door", "window", "kitchen", "car", "gate", "office"),
}
TEMPLATES = (
    "{subject} {verb} {object} {place} {time}",
    "{subject} {verb} {object} {time}",
    "the weather was {weather} {place} {time}",
    "please {imperative} the {thing} before you leave {time}",
    "the train to {city} leaves at {clock} {time}",
    "{subject} saw {number} {plural} {place}",
    "can you tell me where the {quality} {building} is",
    "i would like {number} cups of {drink} for {subject}",
    "did {subject} see {object} {place}",
    "we will meet {place} at {clock}",
)


def make_sentence(rng: np.random.Generator) -> str:
    """One sentence of the grammar (already a normalised transcript)."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    words = {slot: options[int(rng.integers(len(options)))] for slot, options in _WORDS.items()}
    return template.format(**words)


@dataclass(frozen=True)
class _Task:
    out: str
    seed: int
    index: int
    split: str


def pick_voice(split: str, rng: np.random.Generator) -> tts.Voice:
    """A voice of ``split``'s pool (flite with the split's flite share)."""
    flite, share, espeak = VOICES[split]
    pool = flite if flite and rng.random() < share else espeak
    return tts.Voice.parse(pool[int(rng.integers(len(pool)))])


def make_row(task: _Task) -> Row:
    """Synthesise one sentence and return its manifest row."""
    rng = sample_rng(task.seed, task.index)
    sentence, voice = make_sentence(rng), pick_voice(task.split, rng)
    sample_id = f"speech-{task.index:06d}"
    relative = f"audio/{sample_id}.wav"
    duration = tts.write_speech(
        Path(task.out) / relative,
        sentence,
        voice,
        rate=float(rng.uniform(0.85, 1.2)),
        pitch=int(rng.integers(35, 71)),
        seed=int(rng.integers(2**31)),
    )
    return {
        "id": sample_id,
        "audio": relative,
        "transcript": tts.normalise_transcript(sentence),
        "voice": voice.id,
        "engine": voice.engine,
        "duration": round(duration, 3),
    }


def _fields() -> dict[str, Row]:
    return {
        "audio": field("audio", "Spoken sentence, 16 kHz mono 16-bit WAV, peak-normalised."),
        "transcript": field(
            "string", "Exactly the spoken words: lowercase letters, digits, apostrophes, spaces."
        ),
        "voice": field(
            "string", "Voice 'engine:name'; the voices of train, val and test are disjoint."
        ),
        "engine": field(
            "class",
            "Synthesiser: flite (pocketsphinx can recognise it) or espeak.",
            ["espeak", "flite"],
        ),
        "duration": field("float", "Length of the audio in seconds."),
    }


def generate(
    out: Path, size: int | None = None, seed: int = 0, progress: bool = True, **options: Any
) -> Path:
    """Write the speech dataset under ``out``; return the card path.

    Args:
        out: Dataset directory.
        size: Number of utterances (default 2000), split 80/10/10 by voice pools.
        seed: Seeds the sentences, voices, rates and pitches.
        progress: Show a progress bar.
        **options: ``workers`` (processes, default 2).
    """
    check_options(NAME, options, OPTIONS)
    require_program("flite", "flite", NAME)
    size = DEFAULT_SIZE if size is None else size
    out = prepare_out(out, ["audio"])
    splits = contiguous_splits(size)
    tasks = [_Task(str(out), seed, i, split) for i, split in enumerate(splits)]
    rows = parallel_map(
        make_row,
        tasks,
        workers=int(options.get("workers", default_workers())),
        progress=progress,
        label=NAME,
    )
    voices = {split: sorted({*flite, *espeak}) for split, (flite, _, espeak) in VOICES.items()}
    card = {
        "name": NAME,
        "description": DESCRIPTION,
        "license": LICENSE,
        "source": "generated by omnifuse.datasets.speech (espeak-ng 1.52, CMU flite 2.2)",
        "splits": write_manifests(out, rows, splits),
        "fields": _fields(),
        "generator": generator_entry(NAME, seed, VERSION, size=size, voices=voices),
    }
    return write_card(out, card)
