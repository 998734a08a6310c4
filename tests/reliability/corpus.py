"""The bad-input corpus: generated broken (and awkward-but-valid) inputs, each run through the
path a user hits (``omnifuse data check`` / ``train`` / ``eval`` / ``predict`` /
``config validate``, or the Python ``Pipeline`` and processors), with what must happen.

Every case is classified by :func:`run_case`:

* ``clear``: the documented outcome. For a bad input: the expected exit status (or exception
  type), a message naming the file / field / value (every ``needle``), and no traceback. For an
  awkward-but-valid input (CMYK, 96 kHz, one frame ...): success.
* ``traceback``: an exception escaped (a Python traceback, or an unexpected exception type).
* ``silent``: a bad input was accepted, or files saved before the call changed or vanished.
* ``unclear``: refused, but with another exit status or a message that does not name what
  is wrong.

``scripts/bad_inputs.py`` runs the whole corpus and writes the numbers into
``docs/reliability.md``; ``tests/reliability/test_corpus.py`` runs it in CI.
"""

from __future__ import annotations

import json
import pickle
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import media
import yaml
from typer.testing import CliRunner

CLASSES = ("apple", "banana", "cherry")
RUN_TASK = "fused"


@dataclass(frozen=True)
class Env:
    """What the cases run against, built once by :func:`build_env`.

    Attributes:
        root: scratch directory of the campaign.
        run: a saved four-modality model (tiny preset) with a fused classification task.
        data: a plain image dataset: JSONL without ids or card, labels named by ``CLASSES``.
        train_config: a run config training an image classifier on ``data``.
    """

    root: Path
    run: Path
    data: Path
    train_config: Path


@dataclass(frozen=True)
class Case:
    """One input and the path it goes through.

    Attributes:
        name: unique, short.
        group: image, audio, video, text, manifest, path, config, run, device, api.
        via: the user path (``predict``, ``data check``, ``train``, ``eval``, ``config``,
            ``Pipeline``, ``processor``).
        build: writes the case's files under its directory; returns the CLI argv (a list) or
            a zero-argument callable (Python API).
        exit_code: expected CLI exit status (0: the input must be accepted).
        needles: substrings the message must contain (``{dir}`` is the case directory).
        raises: for callables: the exception type names that count as a clear error (empty:
            the call must succeed, and a returned ``False`` counts as silent).
        hostile: a bad input although the call must succeed (see :attr:`valid_input`).
    """

    name: str
    group: str
    via: str
    build: Callable[[Path, Env], Any]
    exit_code: int = 2
    needles: tuple[str, ...] = ()
    raises: tuple[str, ...] = ()
    hostile: bool = False

    @property
    def valid_input(self) -> bool:
        """An awkward but valid input that must be accepted (``hostile``: a bad input whose
        check is a returned ``True``, e.g. that a pickle never ran)."""
        return self.exit_code == 0 and not self.raises and not self.hostile


@dataclass
class Outcome:
    """What :func:`run_case` saw."""

    case: Case
    kind: str
    detail: str = ""


@dataclass
class Summary:
    """Counts over a campaign (what docs/reliability.md reports)."""

    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = Counter(o.kind for o in self.outcomes)
        return {k: found.get(k, 0) for k in ("clear", "traceback", "silent", "unclear")}

    @property
    def tried(self) -> int:
        return len(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind != "clear"]


# ---------------------------------------------------------------------------------- the env


def build_env(root: Path) -> Env:
    """Write the run, the plain dataset and the train config under ``root``."""
    import omnifuse
    from omnifuse.config import load_config

    overrides = [
        "model.heads={}",
        "model.heads.shape={type: classification, num_classes: 3}",
        f"tasks.{RUN_TASK}={{type: classification, head: shape, target: label}}",
    ]
    run = load_config("tiny", overrides)
    model, processors = omnifuse.create_model("tiny", overrides)
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(run.model_dump(mode="json")))
    omnifuse.save(run_dir / "model", model, processors, run)
    data = _plain_dataset(root / "plain")
    return Env(root, run_dir, data, _train_config(root / "train.yaml", data))


def _plain_dataset(out: Path, size: int = 12) -> Path:
    """A JSONL manifest with no ``id`` field and no card: what a user writes by hand."""
    (out / "images").mkdir(parents=True)
    rows = []
    for i in range(size):
        media.png(out / "images" / f"{i}.png", size=(32, 32))
        rows.append({"image": f"images/{i}.png", "label": CLASSES[i % len(CLASSES)]})
    for split in ("train", "val"):
        write_rows(out / f"{split}.jsonl", rows)
    return out


def _train_config(path: Path, data: Path) -> Path:
    config = {
        "name": "plain",
        "model": {
            "encoders": {
                "image": {
                    "type": "vit",
                    "dim": 32,
                    "num_layers": 1,
                    "num_heads": 2,
                    "patch_size": 8,
                    "processor": {"image_size": 32},
                },
                "text": {
                    "type": "transformer",
                    "dim": 32,
                    "num_layers": 1,
                    "num_heads": 2,
                    "tokenizer": {"type": "byte", "max_length": 32},
                },
            },
            "fusion": {"type": "concat", "dim": 32, "num_layers": 1, "num_heads": 2},
            "heads": {"fruit": {"type": "classification", "num_classes": len(CLASSES)}},
        },
        "data": {
            "train": str(data / "train.jsonl"),
            "val": str(data / "val.jsonl"),
            "batch_size": 4,
            "augment": False,
        },
        "tasks": {"fruit": {"type": "classification", "head": "fruit", "target": "label"}},
        "training": {"max_steps": 2, "progress_bar": False, "log_every_n_steps": 1},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def write_rows(path: Path, rows: list[Any]) -> Path:
    """A JSONL file: dict rows as JSON, string rows verbatim."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# ------------------------------------------------------------------------------- the runner


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under ``roots`` (to see that nothing saved was lost)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for root in roots
        if root.exists()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run_case(case: Case, env: Env, directory: Path) -> Outcome:
    """Build and run one case in ``directory``; classify what happened."""
    directory.mkdir(parents=True, exist_ok=True)
    invocation = case.build(directory, env)
    before = snapshot(env.run, env.data, directory)
    if callable(invocation):
        outcome = _run_call(case, invocation, directory)
    else:
        outcome = _run_cli(case, [str(a) for a in invocation], directory)
    after = snapshot(env.run, env.data, directory)
    lost = [p for p, stat in before.items() if after.get(p) != stat]
    if lost and outcome.kind != "traceback":
        return Outcome(case, "silent", f"saved files changed or vanished: {lost[:3]}")
    return outcome


def _needles_missing(case: Case, text: str, directory: Path) -> list[str]:
    flat = text.replace("\n", "")
    wanted = [n.format(dir=directory) for n in case.needles]
    return [n for n in wanted if n not in text and n not in flat]


def _run_cli(case: Case, argv: list[str], directory: Path) -> Outcome:
    from omnifuse.cli.main import app

    result = CliRunner().invoke(app, argv)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        return Outcome(case, "traceback", trace[-800:])
    if "Traceback (most recent call last)" in output:
        return Outcome(case, "traceback", output[-800:])
    if result.exit_code != case.exit_code:
        kind = "silent" if result.exit_code == 0 else "unclear"
        return Outcome(case, kind, f"exit {result.exit_code} != {case.exit_code}: {output[-500:]}")
    missing = _needles_missing(case, output, directory)
    if missing:
        return Outcome(case, "unclear", f"message lacks {missing}: {output[-500:]}")
    return Outcome(case, "clear", output[-300:])


def _run_call(case: Case, call: Callable[[], Any], directory: Path) -> Outcome:
    try:
        value = call()
    except Exception as err:
        name = type(err).__name__
        if name not in case.raises:
            trace = "".join(traceback.format_exception(err))
            return Outcome(case, "traceback", trace[-800:])
        missing = _needles_missing(case, str(err), directory)
        if missing:
            return Outcome(case, "unclear", f"{name} lacks {missing}: {err}")
        return Outcome(case, "clear", f"{name}: {err}"[:300])
    if case.raises or value is False:
        return Outcome(case, "silent", f"accepted, returned {value!r}"[:300])
    return Outcome(case, "clear", "accepted")


def run_corpus(env: Env, cases: list[Case] | None = None) -> Summary:
    """Run ``cases`` (default: every case) against ``env``."""
    summary = Summary()
    for case in cases if cases is not None else all_cases():
        summary.outcomes.append(run_case(case, env, env.root / "cases" / case.name))
    return summary


# ---------------------------------------------------------------------------- case helpers


def predict(modality: str, make: Callable[[Path], Path]) -> Callable[[Path, Env], list[Any]]:
    """``omnifuse predict RUN --task fused --<modality> FILE``, FILE written by ``make``."""

    def build(d: Path, env: Env) -> list[Any]:
        return ["predict", env.run, "--task", RUN_TASK, f"--{modality}", make(d), "--device", "cpu"]

    return build


def check(modality: str, make: Callable[[Path], Path]) -> Callable[[Path, Env], list[Any]]:
    """``omnifuse data check M.jsonl`` over one row whose ``modality`` is FILE."""

    def build(d: Path, env: Env) -> list[Any]:
        path = make(d)
        return ["data", "check", write_rows(d / "m.jsonl", [{modality: path.name}])]

    return build


def manifest(rows: list[Any], card: dict[str, Any] | None = None) -> Callable[[Path, Env], Any]:
    """``omnifuse data check M.jsonl`` over ``rows`` (one real image ``a.png`` beside it)."""

    def build(d: Path, env: Env) -> list[Any]:
        media.png(d / "a.png")
        path = write_rows(d / "m.jsonl", rows)
        if card is not None:
            (d / "card.yaml").write_text(yaml.safe_dump(card))
            return ["data", "check", d]
        return ["data", "check", path]

    return build


def train_on(
    rows: list[Any], extra: tuple[str, ...] = (), card: dict[str, Any] | None = None
) -> Callable[[Path, Env], Any]:
    """``omnifuse train train.yaml data.train=M.jsonl --run-dir DIR/run`` (a real image
    ``a.png`` and, if given, ``card`` next to the manifest)."""

    def build(d: Path, env: Env) -> list[Any]:
        media.png(d / "a.png", size=(32, 32))
        if card is not None:
            (d / "card.yaml").write_text(yaml.safe_dump(card))
        path = write_rows(d / "m.jsonl", rows)
        overrides = [f"data.train={path}", f"data.val={path}", *extra]
        return ["train", env.train_config, *overrides, "--run-dir", d / "run"]

    return build


def config(text: str, command: str = "validate") -> Callable[[Path, Env], list[Any]]:
    def build(d: Path, env: Env) -> list[Any]:
        path = d / "c.yaml"
        path.write_text(text)
        return ["config", command, path]

    return build


def override(*items: str) -> Callable[[Path, Env], list[Any]]:
    def build(d: Path, env: Env) -> list[Any]:
        return ["config", "validate", "tiny", *items]

    return build


def broken_run(damage: Callable[[Path], None]) -> Callable[[Path, Env], list[Any]]:
    """A copy of the env's run, damaged, then ``predict`` on it (with a good image)."""

    def build(d: Path, env: Env) -> list[Any]:
        import shutil

        run = d / "run"
        shutil.copytree(env.run, run)
        damage(run)
        image = media.png(d / "ok.png")
        return ["predict", run, "--task", RUN_TASK, "--image", image, "--device", "cpu"]

    return build


def _truncate_weights(run: Path) -> None:
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _mismatch_config(run: Path) -> None:
    path = run / "model" / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["model"]["encoders"]["image"]["dim"] = 64
    path.write_text(yaml.safe_dump(data))


def _newer_version(run: Path) -> None:
    path = run / "model" / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["format_version"] = 99
    path.write_text(yaml.safe_dump(data))


def _no_model(run: Path) -> None:
    import shutil

    shutil.rmtree(run / "model")
    (run / "run.json").write_text("{}")


def _garbage_config(run: Path) -> None:
    (run / "config.yaml").write_text("model: [unclosed\n")


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: proof that a file was unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def pickled_ckpt(d: Path, env: Env) -> list[Any]:
    """A run dir whose ``checkpoints/last.ckpt`` is a malicious pickle; ``train --resume``."""
    run = d / "run"
    (run / "checkpoints").mkdir(parents=True)
    marker = d / "UNPICKLED"
    (run / "checkpoints" / "last.ckpt").write_bytes(pickle.dumps(_Payload(str(marker))))
    return ["train", env.train_config, "--run-dir", run, "--resume"]


def resume_then_look(d: Path, env: Env) -> Callable[[], bool]:
    """``train --resume`` on the pickled checkpoint; True when the pickle never ran."""

    def call() -> bool:
        from omnifuse.cli.main import app

        CliRunner().invoke(app, [str(a) for a in pickled_ckpt(d, env)])
        return not (d / "UNPICKLED").exists()

    return call


def processor_call(kind: str, path_of: Callable[[Path], Path], **config: Any) -> Any:
    """A callable building the ``kind`` processor of the tiny preset (+ ``config``)."""

    def build(d: Path, env: Env) -> Callable[[], Any]:
        path = path_of(d)

        def call() -> Any:
            from omnifuse.config.audio import AudioProcessorConfig
            from omnifuse.config.video import VideoProcessorConfig
            from omnifuse.modalities.audio import AudioProcessor
            from omnifuse.modalities.video import VideoProcessor

            if kind == "video":
                video = VideoProcessor(VideoProcessorConfig(num_frames=4, **config))
                return _shape_ok(video.load(path), 4)
            audio = AudioProcessor(AudioProcessorConfig(**config))
            features = audio.load(path)
            return bool(features.shape[0] <= audio.config.max_frames and features.isfinite().all())

        return call

    return build


def _shape_ok(clip: Any, frames: int) -> bool:
    return bool(clip.dim() == 4 and clip.shape[0] <= frames and clip.isfinite().all())


# ------------------------------------------------------------------------------- the cases


def _image_cases() -> Iterator[Case]:
    def trunc_png(d: Path) -> Path:
        return media.truncated(d / "t.png", media.png(d / "full.png", size=(64, 64)))

    def trunc_jpg(d: Path) -> Path:
        return media.truncated(d / "t.jpg", media.png(d / "full.jpg", size=(64, 64)))

    def empty(d: Path) -> Path:
        (d / "e.png").write_bytes(b"")
        return d / "e.png"

    def text(d: Path) -> Path:
        (d / "x.png").write_text("this is not an image\n")
        return d / "x.png"

    def bomb(d: Path) -> Path:
        return media.png_header(d / "bomb.png", 30000, 30000)

    def big(d: Path) -> Path:
        return media.png_header(d / "big.png", 12000, 9000)

    def directory(d: Path) -> Path:
        (d / "dir.png").mkdir(exist_ok=True)
        return d / "dir.png"

    def dangling(d: Path) -> Path:
        link = d / "gone.png"
        if not link.is_symlink():
            link.symlink_to(d / "nowhere.png")
        return link

    bad = {
        "truncated_png": (trunc_png, "t.png"),
        "truncated_jpeg": (trunc_jpg, "t.jpg"),
        "zero_bytes": (empty, "e.png"),
        "text_named_png": (text, "x.png"),
        "bomb_30000": (bomb, "bomb.png"),
        "directory": (directory, "dir.png"),
        "dangling_symlink": (dangling, "gone.png"),
    }
    for name, (make, needle) in bad.items():
        yield Case(
            f"image_{name}_predict", "image", "predict", predict("image", make), 2, (needle,)
        )
        yield Case(f"image_{name}_check", "image", "data check", check("image", make), 1, (needle,))
    yield Case("image_100mp_predict", "image", "predict", predict("image", big), 2, ("max_pixels",))
    yield Case("image_100mp_check", "image", "data check", check("image", big), 1, ("too_large",))
    yield Case(
        "image_missing_predict",
        "image",
        "predict",
        predict("image", lambda d: d / "missing.png"),
        2,
        ("missing.png", "not found"),
    )
    yield Case(
        "image_video_as_image",
        "image",
        "predict",
        predict("image", lambda d: media.mp4(d / "clip.mp4")),
        2,
        ("clip.mp4", "not a readable image"),
    )
    good = {
        "1x1": lambda d: media.png(d / "one.png", size=(1, 1)),
        "cmyk_jpeg": lambda d: media.png(d / "c.jpg", mode="CMYK"),
        "16bit": lambda d: media.png(d / "s.png", mode="I;16"),
        "palette": lambda d: media.png(d / "p.png", mode="P"),
        "alpha": lambda d: media.png(d / "a.png", mode="RGBA"),
        "grey": lambda d: media.png(d / "g.png", mode="L"),
        "animated_gif": lambda d: media.animated_gif(d / "g.gif"),
        "strip_1x20000": lambda d: media.png(d / "strip.png", size=(1, 20000)),
    }
    for name, make in good.items():
        yield Case(f"image_{name}_ok", "image", "predict", predict("image", make), 0)
    yield Case("image_cmyk_check_ok", "image", "data check", check("image", good["cmyk_jpeg"]), 0)


def _audio_cases() -> Iterator[Case]:
    def garbage(d: Path) -> Path:
        (d / "g.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
        return d / "g.wav"

    bad: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
        "empty": (lambda d: media.wav(d / "e.wav", seconds=0), ("e.wav", "no samples")),
        "nan": (lambda d: media.wav(d / "n.wav", subtype="FLOAT", fill=float("nan")), ("NaN",)),
        "inf": (lambda d: media.wav(d / "i.wav", subtype="FLOAT", fill=float("inf")), ("i.wav",)),
        "garbage": (garbage, ("g.wav", "cannot decode audio")),
        "text": (lambda d: _text(d / "t.wav"), ("t.wav",)),
    }
    for name, (make, needles) in bad.items():
        yield Case(f"audio_{name}_predict", "audio", "predict", predict("audio", make), 2, needles)
    for name in ("empty", "nan", "garbage"):
        make, needles = bad[name]
        yield Case(f"audio_{name}_check", "audio", "data check", check("audio", make), 1, needles)
    good: dict[str, Callable[[Path], Path]] = {
        "pcm_u8": lambda d: media.wav(d / "u8.wav", subtype="PCM_U8"),
        "pcm_24": lambda d: media.wav(d / "p24.wav", subtype="PCM_24"),
        "float32": lambda d: media.wav(d / "f.wav", subtype="FLOAT"),
        "stereo": lambda d: media.wav(d / "st.wav", channels=2),
        "8_channels": lambda d: media.wav(d / "ch8.wav", channels=8),
        "8khz": lambda d: media.wav(d / "lo.wav", rate=8000),
        "96khz": lambda d: media.wav(d / "hi.wav", rate=96000),
        "mp3": lambda d: media.wav(d / "a.mp3", fmt="MP3", subtype="MPEG_LAYER_III"),
        "ogg": lambda d: media.wav(d / "a.ogg", fmt="OGG", subtype="VORBIS"),
        "10_minutes": lambda d: media.wav(d / "long.wav", seconds=600, rate=8000),
    }
    for name, make in good.items():
        yield Case(f"audio_{name}_ok", "audio", "predict", predict("audio", make), 0)
    yield Case(
        "audio_10_minutes_bounded",
        "audio",
        "processor",
        processor_call("audio", good["10_minutes"], max_seconds=2.0),
        0,
    )
    yield Case(
        "audio_10_minutes_check_ok", "audio", "data check", check("audio", good["10_minutes"]), 0
    )


def _text(path: Path) -> Path:
    path.write_text("plain text, not media\n")
    return path


def _video_cases() -> Iterator[Case]:
    def garbage(d: Path) -> Path:
        (d / "g.mp4").write_bytes(b"\x00\x01garbage" * 100)
        return d / "g.mp4"

    def directory(d: Path) -> Path:
        (d / "dir.mp4").mkdir(exist_ok=True)
        return d / "dir.mp4"

    bad: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
        "garbage": (garbage, ("g.mp4", "cannot open video")),
        "zero_frames": (lambda d: media.mp4(d / "z.mp4", frames=0), ("z.mp4", "no video")),
        "audio_only": (lambda d: media.audio_only_mp4(d / "ao.mp4"), ("ao.mp4", "no video")),
        "directory": (directory, ("dir.mp4", "directory")),
    }
    for name, (make, needles) in bad.items():
        yield Case(f"video_{name}_predict", "video", "predict", predict("video", make), 2, needles)
    for name in ("garbage", "zero_frames", "audio_only"):
        make, needles = bad[name]
        yield Case(
            f"video_{name}_check", "video", "data check", check("video", make), 1, needles[:1]
        )
    four_k = lambda d: media.mp4(d / "4k.mp4", frames=2, size=(3840, 2160))  # noqa: E731
    yield Case(
        "video_one_frame_ok",
        "video",
        "predict",
        predict("video", lambda d: media.mp4(d / "1.mp4", frames=1)),
        0,
    )
    yield Case("video_4k_ok", "video", "predict", predict("video", four_k), 0)
    # FFmpeg reads a still image as a one-frame clip: accepted, like a one-frame video.
    still = predict("video", lambda d: media.png(d / "p.png"))
    yield Case("video_png_as_one_frame_ok", "video", "predict", still, 0)
    yield Case(
        "video_over_max_resolution",
        "video",
        "processor",
        processor_call("video", four_k, max_resolution=1920),
        needles=("max_resolution", "3840x2160"),
        raises=("MediaError",),
    )
    yield Case(
        "video_over_max_frames",
        "video",
        "processor",
        processor_call("video", lambda d: media.mp4(d / "v.mp4", frames=12), max_frames=8),
        needles=("max_frames", "12"),
        raises=("MediaError",),
    )


def _text_cases() -> Iterator[Case]:
    def run_text(value: str) -> Callable[[Path, Env], list[Any]]:
        def build(d: Path, env: Env) -> list[Any]:
            return ["predict", env.run, "--task", RUN_TASK, "--text", value, "--device", "cpu"]

        return build

    yield Case(
        "text_1mb_predict", "text", "predict", run_text("word " * 200_000), 2, ("max_chars",)
    )
    yield Case("text_blank_predict", "text", "predict", run_text("   "), 2, ("empty text",))
    yield Case("text_only_ok", "text", "predict", run_text("a red circle"), 0)
    yield Case(
        "text_1mb_train",
        "text",
        "train",
        train_on([{"image": "a.png", "text": "w" * 1_000_000, "label": "apple"}]),
        2,
        ("max_chars", "m.jsonl:1"),
    )


def _manifest_cases() -> Iterator[Case]:
    ok = {"id": "a", "image": "a.png", "label": "x"}
    card = {
        "name": "c",
        "splits": {"train": {"manifest": "m.jsonl", "size": 1}},
        "fields": {"image": {"type": "image"}, "label": {"type": "class", "classes": ["x", "y"]}},
    }
    bad: dict[str, tuple[Callable[[Path, Env], Any], tuple[str, ...]]] = {
        "invalid_json": (
            manifest([ok, '{"id": "b", "image": '], None),
            ("invalid_json", "m.jsonl:2"),
        ),
        "not_object": (manifest([ok, '["a"]']), ("not_object",)),
        "wrong_type_text": (manifest([{"id": "b", "text": 5}]), ("wrong_type", "text")),
        "wrong_type_captions": (manifest([{"id": "b", "captions": "one"}]), ("captions",)),
        "wrong_type_id": (manifest([{"id": 7, "text": "x"}]), ("wrong_type", "id")),
        "duplicate_id": (manifest([ok, ok]), ("duplicate_id", "first on line 1")),
        "unknown_label": (manifest([{**ok, "label": "zebra"}], card), ("unknown_label", "zebra")),
        "missing_media": (
            manifest([{"id": "b", "image": "none.png"}]),
            ("missing_file", "none.png"),
        ),
        "empty_text": (manifest([{"id": "b", "text": "  "}]), ("empty_text",)),
        "empty_manifest": (manifest([]), ("empty_manifest",)),
    }
    for name, (build, needles) in bad.items():
        yield Case(f"manifest_{name}", "manifest", "data check", build, 1, needles)

    def non_utf8(d: Path, env: Env) -> list[Any]:
        (d / "m.jsonl").write_bytes(b'{"id": "a", "text": "caf\xe9"}\n')
        return ["data", "check", d / "m.jsonl"]

    def bom(d: Path, env: Env) -> list[Any]:
        media.png(d / "a.png")
        (d / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(ok).encode() + b"\n")
        return ["data", "check", d / "m.jsonl"]

    yield Case("manifest_non_utf8", "manifest", "data check", non_utf8, 1, ("not_utf8",))
    yield Case("manifest_bom_ok", "manifest", "data check", bom, 0)
    yield Case("manifest_blank_lines_ok", "manifest", "data check", manifest(["", ok, "  "]), 0)
    yield Case("manifest_no_id_ok", "manifest", "data check", manifest([{"image": "a.png"}] * 2), 0)
    yield Case("manifest_extra_fields_ok", "manifest", "data check", manifest([{**ok, "x": 1}]), 0)
    yield Case(
        "manifest_invalid_json_train",
        "manifest",
        "train",
        train_on([{"image": "a.png", "label": "apple"}, "{oops"]),
        1,
        ("invalid JSON", "m.jsonl:2"),
    )
    fruit_card = {
        "name": "fruit",
        "fields": {
            "image": {"type": "image"},
            "label": {"type": "class", "classes": list(CLASSES)},
        },
    }
    yield Case(
        "manifest_unknown_label_train",
        "manifest",
        "train",
        train_on([{"image": "a.png", "label": "zebra"}], card=fruit_card),
        2,
        ("m.jsonl:1", "zebra", "not a card class"),
    )
    yield Case(
        "manifest_empty_train", "manifest", "train", train_on([]), 1, ("holds no rows", "m.jsonl")
    )
    yield Case(
        "manifest_no_id_train_ok",
        "manifest",
        "train",
        train_on([{"image": "a.png", "label": "apple"}] * 4),
        0,
    )


def _path_cases() -> Iterator[Case]:
    def traversal(d: Path, env: Env) -> list[Any]:
        return ["data", "check", write_rows(d / "m.jsonl", [{"image": "../../../../etc/passwd"}])]

    def symlink(d: Path, env: Env) -> list[Any]:
        outside = media.png(env.root / "outside.png")
        link = d / "link.png"
        if not link.is_symlink():
            link.symlink_to(outside)
        return ["data", "check", write_rows(d / "m.jsonl", [{"image": "link.png"}])]

    def opt_in(d: Path, env: Env) -> list[Any]:
        args = symlink(d, env)
        return [*args, "--allow-outside-root"]

    def inside(d: Path, env: Env) -> list[Any]:
        (d / "img").mkdir(exist_ok=True)
        media.png(d / "img" / "a.png")
        return ["data", "check", write_rows(d / "m.jsonl", [{"image": "img/../img/a.png"}])]

    yield Case(
        "path_traversal_check", "path", "data check", traversal, 1, ("outside_root", "etc/passwd")
    )
    yield Case(
        "path_absolute_check",
        "path",
        "data check",
        manifest([{"image": "/etc/passwd"}]),
        1,
        ("bad_path",),
    )
    yield Case(
        "path_symlink_out_check", "path", "data check", symlink, 1, ("outside_root", "link.png")
    )
    yield Case("path_symlink_opt_in_ok", "path", "data check", opt_in, 0)
    yield Case("path_dotdot_inside_ok", "path", "data check", inside, 0)
    yield Case(
        "path_traversal_train",
        "path",
        "train",
        train_on([{"image": "../../../../etc/passwd", "label": "apple"}]),
        1,
        ("outside_root", "allow_outside_root"),
    )


ALIAS_BOMB = "\n".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x"]',
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]",
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]",
        "name: [*h,*h,*h,*h,*h,*h,*h,*h,*h]",
    ]
)


def _config_cases() -> Iterator[Case]:
    yield Case(
        "config_yaml_syntax",
        "config",
        "config",
        config("model: [a, b\n"),
        2,
        ("YAML syntax error",),
    )
    yield Case("config_alias_bomb", "config", "config", config(ALIAS_BOMB), 2, ("name",))
    yield Case(
        "config_python_tag",
        "config",
        "config",
        config("name: !!python/object/apply:os.system ['touch /tmp/omnifuse-pwned']\n"),
        2,
        ("python/object",),
    )
    yield Case("config_top_level_list", "config", "config", config("- a\n- b\n"), 2, ("mapping",))
    yield Case(
        "config_unknown_nested_key",
        "config",
        "config",
        override("model.fusion.dimm=3"),
        2,
        ("dimm", "did you mean"),
    )
    yield Case(
        "config_zero_image_size",
        "config",
        "config",
        override("model.encoders.image.processor.image_size=0"),
        2,
        ("image_size",),
    )
    yield Case(
        "config_negative_batch",
        "config",
        "config",
        override("data.batch_size=-4"),
        2,
        ("data.batch_size",),
    )
    yield Case(
        "config_zero_max_pixels",
        "config",
        "config",
        override("model.encoders.image.processor.max_pixels=0"),
        2,
        ("max_pixels",),
    )
    yield Case(
        "config_task_reads_missing_modality",
        "config",
        "config",
        override(
            "model.encoders.video=null",
            "tasks.t={type: classification, head: classify, inputs: [video]}",
        ),
        2,
        ("video",),
    )
    yield Case(
        "config_missing_file",
        "config",
        "config",
        lambda d, e: ["config", "validate", d / "nope.yaml"],
        2,
        ("nope.yaml",),
    )


def _run_cases() -> Iterator[Case]:
    def missing(d: Path, env: Env) -> list[Any]:
        return ["predict", d / "nothing", "--image", media.png(d / "a.png")]

    yield Case("run_missing", "run", "predict", missing, 2, ("does not exist",))
    yield Case(
        "run_no_model_yet", "run", "predict", broken_run(_no_model), 2, ("without a saved model",)
    )
    yield Case(
        "run_truncated_weights",
        "run",
        "predict",
        broken_run(_truncate_weights),
        2,
        ("model.safetensors",),
    )
    yield Case(
        "run_config_mismatch",
        "run",
        "predict",
        broken_run(_mismatch_config),
        2,
        ("model.safetensors",),
    )
    yield Case(
        "run_newer_version", "run", "predict", broken_run(_newer_version), 2, ("newer omnifuse",)
    )
    yield Case(
        "run_garbage_config",
        "run",
        "predict",
        broken_run(_garbage_config),
        2,
        ("YAML syntax error",),
    )
    yield Case("run_pickle_ckpt_resume", "run", "train", pickled_ckpt, 2, ("last.ckpt",))
    yield Case("run_pickle_never_unpickled", "run", "train", resume_then_look, 0, hostile=True)
    yield Case(
        "run_unknown_task",
        "run",
        "predict",
        lambda d, e: ["predict", e.run, "--task", "nope", "--text", "x"],
        2,
        ("unknown task", RUN_TASK),
    )

    yield from _eval_cases()

    def eval_bad_data(d: Path, env: Env) -> list[Any]:
        path = write_rows(d / "m.jsonl", [{"image": "none.png", "label": "apple"}])
        return [
            "eval",
            env.run,
            "--data",
            path,
            "--device",
            "cpu",
            "--no-plots",
            "--out",
            d / "eval",
        ]

    yield Case("run_eval_missing_media", "run", "eval", eval_bad_data, 2, ("none.png",))


def eval_on(rows: list[Any]) -> Callable[[Path, Env], list[Any]]:
    """``omnifuse eval RUN --data M.jsonl`` (a real image ``a.png`` beside the manifest)."""

    def build(d: Path, env: Env) -> list[Any]:
        media.png(d / "a.png")
        path = write_rows(d / "m.jsonl", rows)
        return ["eval", env.run, "--data", path, "--device", "cpu", "--no-plots", "--out", d / "e"]

    return build


def _eval_cases() -> Iterator[Case]:
    good = {"image": "a.png", "label": "apple"}
    yield Case("eval_invalid_json", "manifest", "eval", eval_on([good, "{"]), 1, ("m.jsonl:2",))
    yield Case("eval_empty_manifest", "manifest", "eval", eval_on([]), 1, ("holds no rows",))
    yield Case(
        "eval_traversal",
        "path",
        "eval",
        eval_on([{"image": "../../../etc/passwd", "label": "apple"}]),
        1,
        ("outside_root", "allow_outside_root"),
    )

    def truncated_image(d: Path, env: Env) -> list[Any]:
        media.truncated(d / "t.png", media.png(d / "f.png", (64, 64)))
        return eval_on([{"image": "t.png", "label": "apple"}])(d, env)

    yield Case("eval_truncated_image", "image", "eval", truncated_image, 2, ("t.png",))
    yield Case("eval_no_id_ok", "manifest", "eval", eval_on([good, good]), 0)


def _device_cases() -> Iterator[Case]:
    # "cuda" is refused on CPU-only torch; on a CUDA machine an absent index stands in for it.
    cuda = "cuda:99" if __import__("torch").cuda.is_available() else "cuda"
    for device in (cuda, "tpu9", "cuda:7"):

        def build(d: Path, env: Env, device: str = device) -> list[Any]:
            return ["predict", env.run, "--text", "x", "--device", device]

        yield Case(
            f"device_{device}_predict", "device", "predict", build, 2, (device, "valid devices")
        )

    def train_gpu(d: Path, env: Env) -> list[Any]:
        if __import__("torch").cuda.is_available():
            return ["config", "validate", "tiny"]  # a GPU machine: the refusal does not apply
        args = train_on([{"image": "a.png", "label": "apple"}], ("training.accelerator=gpu",))
        return args(d, env)

    no_gpu = "" if __import__("torch").cuda.is_available() else "training.accelerator"
    yield Case("device_gpu_train", "device", "train", train_gpu, 2 if no_gpu else 0, (no_gpu,))

    def eval_device(d: Path, env: Env) -> list[Any]:
        return ["eval", env.run, "--device", "tpu9", "--out", d / "eval"]

    yield Case("device_tpu9_eval", "device", "eval", eval_device, 2, ("tpu9", "valid devices"))


def _api_cases() -> Iterator[Case]:
    """The same failures through the Python API a user calls (Pipeline)."""

    def pipe_call(**inputs: Callable[[Path], Any]) -> Callable[[Path, Env], Any]:
        def build(d: Path, env: Env) -> Callable[[], Any]:
            values = {m: [make(d)] for m, make in inputs.items()}

            def call() -> Any:
                from omnifuse.inference import Pipeline

                return Pipeline.load(env.run, "cpu").predict(RUN_TASK, **values)

            return call

        return build

    yield Case(
        "api_truncated_png",
        "api",
        "Pipeline",
        pipe_call(image=lambda d: media.truncated(d / "t.png", media.png(d / "f.png", (64, 64)))),
        needles=("t.png",),
        raises=("MediaError",),
    )
    yield Case(
        "api_image_array_float",
        "api",
        "Pipeline",
        pipe_call(image=lambda d: __import__("numpy").zeros((8, 8, 3))),
        needles=("uint8",),
        raises=("MediaError",),
    )
    yield Case(
        "api_audio_nan_array",
        "api",
        "Pipeline",
        pipe_call(audio=lambda d: (__import__("numpy").full(1600, float("nan")), 16000)),
        needles=("NaN",),
        raises=("MediaError",),
    )
    yield Case(
        "api_audio_bad_rate",
        "api",
        "Pipeline",
        pipe_call(audio=lambda d: (__import__("numpy").zeros(1600), -5)),
        needles=("sample_rate",),
        raises=("MediaError",),
    )
    yield Case(
        "api_image_only_ok",
        "api",
        "Pipeline",
        pipe_call(image=lambda d: media.png(d / "a.png")),
        0,
    )
    yield Case(
        "api_directory_image",
        "api",
        "Pipeline",
        pipe_call(image=lambda d: _mkdir(d / "dir.png")),
        needles=("dir.png", "directory"),
        raises=("MediaError",),
    )
    yield Case(
        "api_video_over_max_frames",
        "api",
        "Pipeline",
        pipe_call(video=lambda d: __import__("numpy").zeros((60_000, 1, 1, 3), "uint8")),
        needles=("max_frames", "60,000"),
        raises=("MediaError",),
    )

    def not_a_list(d: Path, env: Env) -> Callable[[], Any]:
        def call() -> Any:
            from omnifuse.inference import Pipeline

            return Pipeline.load(env.run, "cpu").predict(RUN_TASK, text="a single string")

        return call

    yield Case(
        "api_text_not_a_list",
        "api",
        "Pipeline",
        not_a_list,
        needles=("list",),
        raises=("InferenceError",),
    )

    def bad_device(d: Path, env: Env) -> Callable[[], Any]:
        def call() -> Any:
            from omnifuse.inference import Pipeline

            return Pipeline.load(env.run, device="tpu9")

        return call

    yield Case(
        "api_bad_device",
        "api",
        "Pipeline",
        bad_device,
        needles=("tpu9", "valid devices here: cpu"),
        raises=("InferenceError",),
    )


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def all_cases() -> list[Case]:
    """Every case of the corpus, in a fixed order."""
    cases = [
        *_image_cases(),
        *_audio_cases(),
        *_video_cases(),
        *_text_cases(),
        *_manifest_cases(),
        *_path_cases(),
        *_config_cases(),
        *_run_cases(),
        *_device_cases(),
        *_api_cases(),
    ]
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates}")
    return cases
