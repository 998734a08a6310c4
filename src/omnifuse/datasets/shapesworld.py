"""ShapesWorld: procedural scenes with captions, VQA, labels, spoken captions and motion clips.

Every row holds a 64x64 PNG scene of 1-4 shapes, its captions, one VQA triple, a visual label
(shape of the largest object), a text label (colour of the largest object, the first colour
named in every caption), the caption spoken by a random voice, and an independent 8-frame clip
of one or two moving shapes. The image/audio/video media are optional per row (by field
presence): see the ``modalities`` and ``missing`` options of :func:`generate`. With
``questions=N`` each split also gets ``<split>_vqa.jsonl``, N more questions per scene
(:func:`vqa_rows`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
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
from omnifuse.datasets.language import (
    ANSWERS,
    QUESTION_TYPES,
    make_captions,
    make_question,
    make_questions,
)
from omnifuse.datasets.render import COLOURS, SHAPES, Sprite, draw, write_mp4
from omnifuse.datasets.scenes import IMAGE_SIZE, Scene, parse_scene, sample_scene

NAME = "shapesworld"
VERSION = "1.2"  # 1.2: the first caption names every object and where the main one is
# (1.1: the main object is >= MAIN_MARGIN px larger than any other)
DEFAULT_SIZE = 5000
MEDIA = ("image", "audio", "video")
OPTIONS = ("modalities", "missing", "workers", "flite", "questions")
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}
VIDEO_FRAMES, VIDEO_FPS = 8, 8
_VERBS = ("moves", "goes", "slides")
LICENSE = "CC0-1.0 (generated; speech by espeak-ng and CMU flite: their output is unrestricted)"
DESCRIPTION = (
    "Procedural shape scenes covering every modality and six task families: captioning and "
    "retrieval (caption, captions), VQA (question, answer, question_type), image classification "
    "(label), text classification (topic), speech (audio, transcript, voice) and motion clips "
    "(video, video_caption, motion, video_label, video_colour)."
)
# Independent random streams per sample, so turning a modality off changes nothing else, and
# extra questions (a stream of their own) leave every other field as it was.
_SCENE, _VOICE, _VIDEO, _DROP, _QUESTIONS = range(5)
VQA_FIELDS = ("id", "image", "question", "answer", "question_type", "label", "topic", "scene")
"""Fields of a row of a ``<split>_vqa.jsonl`` manifest (``image`` only where the row has one).
``label`` and ``topic`` (the main object's shape and colour) let a grounding task train on the
same batches as VQA."""


@dataclass(frozen=True)
class Mover:
    """A shape moving in a straight line through a clip (pixels per frame along ``direction``)."""

    shape: str
    colour: str
    radius: int
    x: int
    y: int
    direction: str
    speed: int

    def at(self, frame: int) -> Sprite:
        """The shape as drawn in frame ``frame`` (0-based)."""
        dx, dy = DIRECTIONS[self.direction]
        return Sprite(
            self.shape,
            self.colour,
            self.x + dx * self.speed * frame,
            self.y + dy * self.speed * frame,
            self.radius,
        )


@dataclass(frozen=True)
class _Task:
    out: str
    seed: int
    index: int
    media: tuple[str, ...]
    missing: float
    flite: bool


def _start(rng: np.random.Generator, radius: int, direction: str, travel: int) -> tuple[int, int]:
    """A start centre keeping the whole trajectory inside the frame."""
    lo, hi = radius + 1, IMAGE_SIZE - radius - 1
    dx, dy = DIRECTIONS[direction]
    x_lo, x_hi = (lo + travel, hi) if dx < 0 else (lo, hi - travel) if dx > 0 else (lo, hi)
    y_lo, y_hi = (lo + travel, hi) if dy < 0 else (lo, hi - travel) if dy > 0 else (lo, hi)
    return int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))


def sample_clip(rng: np.random.Generator) -> tuple[Mover, ...]:
    """One large mover, plus (half of the time) a small one going another way."""
    names = list(DIRECTIONS)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    picks = rng.choice(len(combos), size=2, replace=False)
    directions = [names[int(i)] for i in rng.choice(len(names), size=2, replace=False)]
    movers = []
    for k, (radius_lo, radius_hi) in enumerate(((9, 11), (5, 7))):
        if k == 1 and rng.random() < 0.5:
            break
        colour, shape = combos[int(picks[k])]
        radius, speed = int(rng.integers(radius_lo, radius_hi + 1)), int(rng.integers(3, 5))
        x, y = _start(rng, radius, directions[k], speed * (VIDEO_FRAMES - 1))
        movers.append(Mover(shape, colour, radius, x, y, directions[k], speed))
    return tuple(movers)


def clip_caption(movers: Sequence[Mover], rng: np.random.Generator) -> str:
    """``"the red circle moves left and the small blue square goes up"``."""
    first, verb = movers[0], _VERBS[int(rng.integers(len(_VERBS)))]
    main = f"the {first.colour} {first.shape} {verb} {first.direction}"
    if len(movers) == 1:
        return main
    other, verb = movers[1], _VERBS[int(rng.integers(len(_VERBS)))]
    return f"{main} and the small {other.colour} {other.shape} {verb} {other.direction}"


def _video_fields(task: _Task, sample_id: str) -> Row:
    rng = sample_rng(task.seed, task.index, _VIDEO)
    movers, background = sample_clip(rng), int(rng.integers(200, 256))
    frames = [
        np.asarray(draw([m.at(f) for m in movers], IMAGE_SIZE, background))
        for f in range(VIDEO_FRAMES)
    ]
    relative = f"video/{sample_id}.mp4"
    write_mp4(Path(task.out) / relative, frames, fps=VIDEO_FPS)
    main = movers[0]
    return {
        "video": relative,
        "video_caption": clip_caption(movers, rng),
        "motion": main.direction,
        "video_label": main.shape,
        "video_colour": main.colour,
    }


@functools.cache
def voice_pools(flite: bool) -> tuple[tuple[tts.Voice, ...], tuple[tts.Voice, ...]]:
    """(flite voices, espeak voices) to draw from; no flite voices when ``flite`` is False."""
    return tuple(tts.flite_voices() if flite else ()), tuple(tts.espeak_voices())


def _audio_fields(task: _Task, sample_id: str, transcript: str) -> Row:
    rng = sample_rng(task.seed, task.index, _VOICE)
    flite, espeak = voice_pools(task.flite)
    pool = flite if flite and rng.random() < 0.3 else espeak
    voice = pool[int(rng.integers(len(pool)))]
    relative = f"audio/{sample_id}.wav"
    tts.write_speech(
        Path(task.out) / relative,
        transcript,
        voice,
        rate=float(rng.uniform(0.85, 1.2)),
        pitch=int(rng.integers(35, 71)),
        seed=int(rng.integers(2**31)),
    )
    return {"audio": relative, "transcript": transcript, "voice": voice.id}


def row_id(index: int) -> str:
    """``"sw-000017"``: the ``id`` of sample ``index``."""
    return f"sw-{index:06d}"


def row_index(sample_id: str) -> int:
    """Inverse of :func:`row_id`: ``"sw-000017"`` -> 17."""
    prefix, _, digits = sample_id.partition("-")
    if prefix != "sw" or not digits.isdigit():
        raise ValueError(f"bad shapesworld id {sample_id!r}: expected 'sw-' and digits: sw-000017")
    return int(digits)


def make_row(task: _Task) -> Row:
    """Generate one sample (writing its media) and return its manifest row."""
    sample_id = row_id(task.index)
    rng = sample_rng(task.seed, task.index, _SCENE)
    scene = sample_scene(rng)
    captions = make_captions(scene, rng)
    question, answer, question_type = make_question(scene, rng)
    drop = sample_rng(task.seed, task.index, _DROP).random(len(MEDIA)) < task.missing
    keep = {m: m in task.media and not dropped for m, dropped in zip(MEDIA, drop, strict=True)}
    row: Row = {"id": sample_id, "text": captions[0]}
    if keep["image"]:
        row["image"] = f"images/{sample_id}.png"
        draw([o.sprite() for o in scene.objects], IMAGE_SIZE, scene.background).save(
            Path(task.out) / row["image"]
        )
    row |= {"caption": captions[0], "captions": captions, "question": question, "answer": answer}
    row |= {"question_type": question_type, "label": scene.main.shape, "topic": scene.main.colour}
    row["scene"] = scene.describe()
    if keep["audio"]:
        row |= _audio_fields(task, sample_id, tts.normalise_transcript(captions[0]))
    if keep["video"]:
        row |= _video_fields(task, sample_id)
    return row


def vqa_rows(row: Row, seed: int, index: int, count: int) -> list[Row]:
    """The VQA rows of one sample: its own question, then ``count`` extra distinct ones.

    The extra questions come from their own random stream (``_QUESTIONS``), so they change
    nothing else in the dataset; they depend only on the sample's seed, index and ``scene``, so
    they can be added to an existing manifest (``scripts/vqa_questions.py``). A scene that
    supports fewer distinct questions (one object) gets fewer rows.

    Args:
        row: The sample's manifest row (``id``, ``question``, ``answer``, ``question_type``,
            ``label``, ``topic``, ``scene``; ``image`` is copied where present).
        seed: Dataset seed.
        index: Sample index (``sw-000017`` is 17).
        count: Extra questions wanted.

    Returns:
        Rows of :data:`VQA_FIELDS`; ids are ``<id>-q<k>``, ``k = 0`` the row's own question.
    """
    scene = Scene(parse_scene(row["scene"]))
    rng = sample_rng(seed, index, _QUESTIONS)
    own = (row["question"], row["answer"], row["question_type"])
    extra = make_questions(scene, rng, count, exclude=(row["question"],))
    rows = []
    for k, (question, answer, question_type) in enumerate([own, *extra]):
        vqa: Row = {"id": f"{row['id']}-q{k}"}
        if "image" in row:
            vqa["image"] = row["image"]
        vqa |= {"question": question, "answer": answer, "question_type": question_type}
        rows.append(vqa | {key: row[key] for key in ("label", "topic", "scene")})
    return rows


def _fields(voices: int) -> dict[str, Row]:
    directions, colours, shapes = list(DIRECTIONS), list(COLOURS), list(SHAPES)
    return {
        "text": field(
            "text",
            "The caption again (same as `caption`) as text-modality input, e.g. for text "
            "classification of `topic`; leave text out of models whose target is the caption.",
        ),
        "image": field("image", "64x64 RGB PNG of 1-4 flat shapes on a grey background."),
        "caption": field("string", "One caption of the image (lowercase; varied templates)."),
        "captions": field(
            "strings", "Up to 5 distinct reference captions (the first is `caption`)."
        ),
        "question": field("string", "A question about the image."),
        "answer": field(
            "class",
            "Short answer: yes/no, a digit 0-4, a colour, a shape, small/large, or "
            "left/right/above/below (a closed vocabulary: VQA as classification).",
            list(ANSWERS),
        ),
        "question_type": field("string", f"One of: {', '.join(QUESTION_TYPES)}."),
        "label": field("class", "Shape of the largest object in the image.", shapes),
        "topic": field(
            "class",
            "Colour of the largest object: the first colour word of every caption.",
            colours,
        ),
        "scene": field(
            "string",
            "Ground truth: '; '-joined 'SIZE COLOUR SHAPE at X,Y rRADIUS' (pixels, y down).",
        ),
        "audio": field("audio", "The caption spoken (16 kHz mono WAV)."),
        "transcript": field("string", "Exactly the spoken words: lowercase, no punctuation."),
        "voice": field(
            "string",
            f"Voice 'engine:name', one of {voices} (espeak-ng accent+variant, flite).",
        ),
        "video": field(
            "video",
            f"{VIDEO_FRAMES}-frame {IMAGE_SIZE}x{IMAGE_SIZE} lossless H.264 MP4 ({VIDEO_FPS} fps) "
            "of one or two moving shapes.",
        ),
        "video_caption": field("string", "What moves where, e.g. 'the red circle moves left'."),
        "motion": field("class", "Direction of the large (first-named) moving shape.", directions),
        "video_label": field("class", "Shape of the large moving shape.", shapes),
        "video_colour": field("class", "Colour of the large moving shape.", colours),
    }


@dataclass(frozen=True)
class _Options:
    """The generator options of :func:`generate`, validated."""

    media: tuple[str, ...]
    missing: float
    workers: int
    flite: bool
    questions: int


def _parse_questions(options: Mapping[str, Any]) -> int:
    questions = options.get("questions", 0)
    if isinstance(questions, bool) or not isinstance(questions, int) or questions < 0:
        raise ValueError(
            f"questions={questions!r} must be an integer >= 0: extra VQA questions per scene, "
            "written to <split>_vqa.jsonl (0: none)"
        )
    return questions


def _parse_options(options: Mapping[str, Any]) -> _Options:
    check_options(NAME, options, OPTIONS)
    media = tuple(options.get("modalities", MEDIA))
    bad = sorted(set(media) - set(MEDIA))
    if bad:
        raise ValueError(f"modalities {bad} are not media of {NAME}; valid: {', '.join(MEDIA)}")
    missing = float(options.get("missing", 0.0))
    if not 0.0 <= missing < 1.0:
        raise ValueError(
            f"missing={missing} must be in [0, 1): the fraction of rows lacking each medium"
        )
    flite = options.get("flite")
    if flite and "audio" in media:
        require_program("flite", "flite", f"{NAME} with flite=True")
    use_flite = tts.flite_available() if flite is None else bool(flite)
    workers = int(options.get("workers", default_workers()))
    return _Options(media, missing, workers, use_flite, _parse_questions(options))


def _write_vqa_manifests(
    out: Path, rows: Sequence[Row], splits: Sequence[str], seed: int, count: int
) -> dict[str, Row]:
    """Write ``<split>_vqa.jsonl`` (:func:`vqa_rows` of every row); return their card splits."""
    vqa: list[Row] = []
    names: list[str] = []
    for index, (row, split) in enumerate(zip(rows, splits, strict=True)):
        questions = vqa_rows(row, seed, index, count)
        vqa += questions
        names += [f"{split}_vqa"] * len(questions)
    return write_manifests(out, vqa, names)


def generate(
    out: Path, size: int | None = None, seed: int = 0, progress: bool = True, **options: Any
) -> Path:
    """Write ShapesWorld under ``out``; return the card path.

    Args:
        out: Dataset directory (created; files are overwritten).
        size: Number of samples (default 5000), split 80/10/10 into train/val/test.
        seed: Dataset seed; the same seed gives identical manifests and media.
        progress: Show a progress bar.
        **options: ``modalities`` (subset of image/audio/video to write, default all),
            ``missing`` (fraction of rows lacking each medium, default 0), ``workers``
            (processes, default 2), ``flite`` (use flite voices; default: if installed),
            ``questions`` (extra VQA questions per scene, default 0: with N > 0 every split
            also gets ``<split>_vqa.jsonl``, one row per question; see :func:`vqa_rows`).
    """
    opts = _parse_options(options)
    size = DEFAULT_SIZE if size is None else size
    media_dirs = (("images", "image"), ("audio", "audio"), ("video", "video"))
    out = prepare_out(out, [d for d, m in media_dirs if m in opts.media])
    tasks = [_Task(str(out), seed, i, opts.media, opts.missing, opts.flite) for i in range(size)]
    rows = parallel_map(make_row, tasks, workers=opts.workers, progress=progress, label=NAME)
    splits = contiguous_splits(size)
    card_splits = write_manifests(out, rows, splits)
    if opts.questions > 0:
        card_splits |= _write_vqa_manifests(out, rows, splits, seed, opts.questions)
    card = {
        "name": NAME,
        "description": DESCRIPTION,
        "license": LICENSE,
        "source": "procedurally generated by omnifuse.datasets.shapesworld",
        "splits": card_splits,
        "fields": {
            name: spec
            for name, spec in _fields(sum(map(len, voice_pools(opts.flite)))).items()
            if any(name in row for row in rows)
        },
        "generator": generator_entry(
            NAME,
            seed,
            VERSION,
            size=size,
            modalities=list(opts.media),
            missing=opts.missing,
            flite=opts.flite,
            questions=opts.questions,
        ),
    }
    return write_card(out, card)
