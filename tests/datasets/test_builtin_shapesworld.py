"""ShapesWorld: determinism, media validity, caption variety and correctness of the VQA answers."""

from __future__ import annotations

import re
import runpy
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf
from builtin_helpers import all_rows, read_card, read_rows
from PIL import Image

from omnifuse.datasets import MissingResourceError, make, shapesworld
from omnifuse.datasets._common import sample_rng
from omnifuse.datasets.language import (
    ANSWERS,
    make_captions,
    make_question,
    make_questions,
    retrieval_ceiling,
)
from omnifuse.datasets.render import COLOURS, SHAPES
from omnifuse.datasets.scenes import (
    MAIN_MARGIN,
    Scene,
    SceneObject,
    parse_scene,
    region,
    sample_scene,
)

SIZE = 20


@pytest.fixture(scope="module")
def world(generated: Callable[..., Path]) -> Path:
    return generated("shapesworld", SIZE, workers=1)


def _decoded_video(path: Path) -> np.ndarray:
    """Native YUV planes of every frame: no colour conversion in between."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray() for frame in container.decode(video=0)])


def _rgb_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_in_parallel_gives_identical_manifests_and_media(
    world: Path, generated: Callable[..., Path]
) -> None:
    again = generated(
        "shapesworld", SIZE, workers=2
    )  # another run, samples spread over 2 processes
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "card.yaml"):
        assert (world / name).read_bytes() == (again / name).read_bytes(), name
    for row in all_rows(world):
        assert (world / row["image"]).read_bytes() == (again / row["image"]).read_bytes()
        assert (world / row["audio"]).read_bytes() == (again / row["audio"]).read_bytes()
        np.testing.assert_array_equal(
            _decoded_video(world / row["video"]), _decoded_video(again / row["video"])
        )


def test_different_seeds_give_different_scenes(world: Path, generated: Callable[..., Path]) -> None:
    other = generated("shapesworld", SIZE, seed=1, workers=1)
    scenes = [row["scene"] for row in all_rows(world)]
    other_scenes = [row["scene"] for row in all_rows(other)]
    assert len(set(scenes) & set(other_scenes)) == 0
    first = all_rows(world)[0]["image"]
    assert (world / first).read_bytes() != (other / first).read_bytes()


# --- manifests, card and media ---------------------------------------------------------------


def test_card_lists_splits_and_fields_of_the_manifests(world: Path) -> None:
    card, rows = read_card(world), read_rows(world)
    assert {name: spec["size"] for name, spec in card["splits"].items()} == {
        "train": 16,
        "val": 2,
        "test": 2,
    }
    assert {name: len(split) for name, split in rows.items()} == {"train": 16, "val": 2, "test": 2}
    assert card["generator"]["name"] == "omnifuse.datasets.shapesworld"
    assert card["generator"]["seed"] == 0
    keys = {key for row in all_rows(world) for key in row} - {"id"}
    assert keys == set(card["fields"])
    for name, spec in card["fields"].items():
        if spec["type"] == "class":
            assert {row[name] for row in all_rows(world)} <= set(spec["classes"]), name
    ids = [row["id"] for row in all_rows(world)]
    assert len(ids) == len(set(ids))


def test_every_referenced_file_opens(world: Path) -> None:
    for row in all_rows(world):
        with Image.open(world / row["image"]) as image:
            assert (image.size, image.mode) == ((64, 64), "RGB")
        info = sf.info(str(world / row["audio"]))
        assert (info.samplerate, info.channels) == (16000, 1)
        frames = _rgb_frames(world / row["video"])
        assert len(frames) == shapesworld.VIDEO_FRAMES
        assert frames[0].shape == (64, 64, 3)


def test_dataset_passes_the_data_layer_check(world: Path) -> None:
    from omnifuse.data.check import check_dataset

    report = check_dataset(world)
    assert report.ok, report.problems[:5]
    assert report.rows == SIZE
    assert report.media_checked == 3 * SIZE


def test_main_object_is_drawn_at_its_place_in_its_colour(world: Path) -> None:
    for row in all_rows(world):
        main = max(parse_scene(row["scene"]), key=lambda obj: obj.radius)
        pixels = np.asarray(Image.open(world / row["image"]), dtype=int)
        centre = pixels[main.y, main.x]
        assert np.abs(centre - COLOURS[main.colour]).max() <= 12, (row["id"], centre)
        assert (row["label"], row["topic"]) == (main.shape, main.colour)


def test_main_object_is_clearly_the_largest(world: Path) -> None:
    for row in all_rows(world):
        radii = sorted(obj.radius for obj in parse_scene(row["scene"]))
        if len(radii) > 1:
            assert radii[-1] - radii[-2] >= MAIN_MARGIN, (row["id"], radii)


def test_clip_motion_matches_the_frames(world: Path) -> None:
    checked = 0
    for row in all_rows(world):
        if f"small {row['video_colour']}" in row["video_caption"]:
            continue  # both movers share the colour: a colour mask cannot tell them apart
        centres = []
        for frame in _rgb_frames(world / row["video"]):
            mask = np.abs(frame.astype(int) - COLOURS[row["video_colour"]]).max(axis=-1) < 40
            ys, xs = np.nonzero(mask)
            centres.append((xs.mean(), ys.mean()))
        dx, dy = np.subtract(centres[-1], centres[0])
        expected = {"left": -dx, "right": dx, "up": -dy, "down": dy}[row["motion"]]
        assert expected >= 15, (row["id"], row["motion"], dx, dy)
        checked += 1
    assert checked >= SIZE // 2


def test_spoken_transcript_is_the_normalised_caption(world: Path) -> None:
    for row in all_rows(world):
        words = re.sub(r"[^a-z0-9' ]", " ", row["caption"]).split()
        assert row["transcript"] == " ".join(words)
        samples, _ = sf.read(str(world / row["audio"]))
        seconds = len(samples) / 16000
        assert 0.12 * len(words) < seconds < 0.8 * len(words) + 1.0, (row["id"], seconds)
        assert np.abs(samples).max() > 0.5  # peak-normalised speech, not silence
        assert row["voice"].split(":")[0] in ("espeak", "flite")


# --- language --------------------------------------------------------------------------------


def test_captions_vary_for_the_same_scene() -> None:
    scene = sample_scene(sample_rng(0, 3), count=3)
    firsts = {make_captions(scene, sample_rng(7, k))[0] for k in range(12)}
    assert len(firsts) >= 4
    captions = make_captions(scene, sample_rng(7, 0))
    assert len(captions) == len(set(captions)) == 5


def _lone(colour: str, shape: str, x: int = 32, size: str = "large") -> Scene:
    return Scene((SceneObject(shape, colour, size, x, 32, 11 if size == "large" else 6),))


def test_first_caption_names_every_object_and_where_the_main_one_is() -> None:
    # The caption retrieval ranks must tell scenes apart: no object left out, the main one placed.
    for k in range(20):
        scene = sample_scene(sample_rng(3, k))
        first = make_captions(scene, sample_rng(5, k))[0]
        assert f"{scene.main.name} {region(scene.main)}" in first, first
        for obj in scene.objects:
            assert obj.name in first, (obj.name, first)


def test_retrieval_ceiling_is_one_when_captions_name_distinct_scenes() -> None:
    scenes = [_lone("red", "circle"), _lone("blue", "square"), _lone("green", "star")]
    texts = [make_captions(scene, sample_rng(1, k), count=1)[0] for k, scene in enumerate(scenes)]
    assert retrieval_ceiling(scenes, texts, draws=50) == 1.0


def test_retrieval_ceiling_shares_out_captions_that_fit_several_scenes() -> None:
    # Two lone red circles in the middle: "a red circle in the middle" fits both; a blue square
    # is told apart. Expected R@1: (1/2 + 1/2 + 1) / 3.
    scenes = [_lone("red", "circle", 28), _lone("red", "circle", 36), _lone("blue", "square")]
    texts = [
        "a red circle in the middle",
        "a red circle in the middle",
        "a blue square in the middle",
    ]
    assert retrieval_ceiling(scenes, texts, draws=500) == pytest.approx(2 / 3)
    # The second circle is small and the first caption says "big": the second scene cannot
    # produce that caption (R@1 1), but the first can still produce the second's caption
    # (R@1 1/2). Expected: (1/2 + 1 + 1) / 3.
    texts[0] = "a big red circle in the middle"
    scenes[1] = _lone("red", "circle", 36, size="small")
    assert retrieval_ceiling(scenes, texts, draws=2000) == pytest.approx(5 / 6)


def test_retrieval_ceiling_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 scenes but 1 texts"):
        retrieval_ceiling([_lone("red", "circle")] * 2, ["a single red circle"])


def test_first_colour_and_shape_named_are_the_main_object(world: Path) -> None:
    for row in all_rows(world):
        for caption in row["captions"]:
            words = caption.replace(",", " ").replace(":", " ").split()
            assert next(w for w in words if w in COLOURS) == row["topic"], caption
            assert next(w for w in words if w in SHAPES) == row["label"], caption


def _objects(scene: Scene) -> list[dict[str, Any]]:
    """Re-read the scene from its text form with a regex of our own."""
    pattern = r"(small|large) (\w+) (\w+) at (\d+),(\d+) r(\d+)"
    return [
        {"size": s, "colour": c, "shape": sh, "x": int(x), "y": int(y), "r": int(r)}
        for s, c, sh, x, y, r in re.findall(pattern, scene.describe())
    ]


class _Oracle:
    """Answers computed independently from the objects, one method per question form."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.count = {k: Counter(o[k] for o in objects) for k in ("colour", "shape", "size")}

    def find(self, colour: str, shape: str) -> dict[str, Any]:
        return next(o for o in self.objects if o["colour"] == colour and o["shape"] == shape)

    def combo(self, colour: str, shape: str) -> str:
        return _yes(any(o["colour"] == colour and o["shape"] == shape for o in self.objects))

    def has_shape(self, shape: str) -> str:
        return _yes(self.count["shape"][shape] > 0)

    def has_colour(self, colour: str) -> str:
        return _yes(self.count["colour"][colour] > 0)

    def total(self) -> str:
        return str(len(self.objects))

    def of_colour_or_size(self, value: str) -> str:
        return str(self.count["colour"][value] + self.count["size"][value])

    def of_shape(self, shape: str) -> str:
        return str(self.count["shape"][shape])

    def colour_of(self, shape: str) -> str:
        return str(next(o["colour"] for o in self.objects if o["shape"] == shape))

    def shape_of(self, colour: str) -> str:
        return str(next(o["shape"] for o in self.objects if o["colour"] == colour))

    def size_of(self, colour: str, shape: str) -> str:
        return str(self.find(colour, shape)["size"])

    def bigger(self, c1: str, s1: str, word: str, c2: str, s2: str) -> str:
        larger = self.find(c1, s1)["r"] > self.find(c2, s2)["r"]
        return _yes(larger == (word == "bigger"))

    def more_colour(self, c1: str, c2: str) -> str:
        return _yes(self.count["colour"][c1] > self.count["colour"][c2])

    def more_shape(self, s1: str, s2: str) -> str:
        return _yes(self.count["shape"][s1] > self.count["shape"][s2])

    def left_or_right(self, c1: str, s1: str, c2: str, s2: str) -> str:
        return "left" if self.find(c1, s1)["x"] < self.find(c2, s2)["x"] else "right"

    def above_or_below(self, c1: str, s1: str, c2: str, s2: str) -> str:
        return "above" if self.find(c1, s1)["y"] < self.find(c2, s2)["y"] else "below"

    def is_left(self, c1: str, s1: str, side: str, c2: str, s2: str) -> str:
        return _yes((self.find(c1, s1)["x"] < self.find(c2, s2)["x"]) == (side == "left"))

    def is_above(self, c1: str, s1: str, word: str, c2: str, s2: str) -> str:
        higher = self.find(c1, s1)["y"] < self.find(c2, s2)["y"]
        return _yes(higher == (word in ("above", "over")))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


_W2 = r"(\w+) (\w+)"
_FORMS = [  # (question regex, oracle method); the first full match wins
    (rf"is there an? {_W2}\?", "combo"),
    (r"is there an? (\w+)(?: in the picture)?\?", "has_shape"),
    (r"(?:is there anything|are there any) (\w+)(?: shapes)?\?", "has_colour"),
    (r"how many (?:shapes are there|objects are in the picture)\?", "total"),
    (r"how many (\w+) shapes are there\?", "of_colour_or_size"),
    (r"how many (\w+)s are there\?", "of_shape"),
    (r"what colour is the (\w+)\?", "colour_of"),
    (r"what (?:shape is|is the shape of) the (\w+) object\?", "shape_of"),
    (rf"(?:what size is|is) the {_W2}(?: small or large)?\?", "size_of"),
    (rf"is the {_W2} (bigger|smaller) than the {_W2}\?", "bigger"),
    (r"are there more (\w+) shapes than (\w+) shapes\?", "more_colour"),
    (r"are there more (\w+)s than (\w+)s\?", "more_shape"),
    (rf"is the {_W2} to the left or to the right of the {_W2}\?", "left_or_right"),
    (rf"is the {_W2} above or below the {_W2}\?", "above_or_below"),
    (rf"is the {_W2} (?:to the |on the )?(left|right) of the {_W2}\?", "is_left"),
    (rf"is the {_W2} (above|over|below|under|beneath) the {_W2}\?", "is_above"),
]


def _expected_answer(question: str, objects: list[dict[str, Any]]) -> str | None:
    """The answer of the first matching form, or None if no form covers the question."""
    oracle = _Oracle(objects)
    for pattern, method in _FORMS:
        match = re.fullmatch(pattern, question)
        if match is not None:
            answer: str = getattr(oracle, method)(*match.groups())
            return answer
    return None


def test_vqa_answers_are_right_for_the_scene() -> None:
    checked: Counter[str] = Counter()
    for index in range(400):
        rng = sample_rng(5, index)
        scene = sample_scene(rng)
        question, answer, question_type = make_question(scene, rng)
        expected = _expected_answer(question, _objects(scene))
        assert expected is not None, f"question form not covered by the test: {question!r}"
        assert answer == expected, (question, scene.describe())
        assert answer in ANSWERS  # VQA is classification over the closed answer vocabulary
        checked[question_type] += 1
    assert set(checked) == {"existence", "count", "attribute", "spatial", "comparison"}
    assert min(checked.values()) >= 40


def test_yes_no_answers_are_balanced() -> None:
    answers: Counter[str] = Counter()
    for index in range(600):
        rng = sample_rng(9, index)
        answers[make_question(sample_scene(rng), rng)[1]] += 1
    yes, no = answers["yes"], answers["no"]
    assert yes + no > 200
    assert 0.4 < yes / (yes + no) < 0.6


def test_extra_questions_are_distinct_and_right_for_the_scene() -> None:
    types: Counter[str] = Counter()
    for index in range(200):
        rng = sample_rng(4, index)
        scene = sample_scene(rng)
        own = make_question(scene, rng)[0]
        extra = make_questions(scene, rng, 6, exclude=(own,))
        questions = [question for question, _, _ in extra]
        assert len(set(questions)) == len(questions) and own not in questions
        assert 1 <= len(extra) <= 6
        for question, answer, question_type in extra:
            assert answer == _expected_answer(question, _objects(scene)), question
            types[question_type] += 1
    assert set(types) == {"existence", "count", "attribute", "spatial", "comparison"}
    assert sum(types.values()) > 190 * 6  # nearly every scene supports six more questions


def test_spatial_relations_are_clear_not_borderline() -> None:
    for index in range(200):
        rng = sample_rng(2, index)
        scene = sample_scene(rng)
        question, _, question_type = make_question(scene, rng)
        if question_type != "spatial":
            continue
        names = re.findall(r"the (\w+ \w+)", question)
        by_name = {obj.name: obj for obj in scene.objects}
        a, b = by_name[names[0]], by_name[names[-1]]
        axis_gap = abs(a.x - b.x) if "left" in question or "right" in question else abs(a.y - b.y)
        assert axis_gap >= 6, question


# --- options ---------------------------------------------------------------------------------


def test_media_are_optional_by_field_presence(world: Path, generated: Callable[..., Path]) -> None:
    partial = generated("shapesworld", SIZE, workers=1, modalities=("image", "video"), missing=0.5)
    rows, full = all_rows(partial), {row["id"]: row for row in all_rows(world)}
    assert not any("audio" in row or "transcript" in row for row in rows)
    assert "audio" not in read_card(partial)["fields"]
    assert 0 < sum("image" in row for row in rows) < SIZE
    assert 0 < sum("video" in row for row in rows) < SIZE
    for row in rows:  # independent random streams: the rest of each row is unchanged
        assert row["captions"] == full[row["id"]]["captions"]
        assert row["question"] == full[row["id"]]["question"]
        assert ("video_caption" in row) == ("video" in row)


def test_questions_option_writes_vqa_manifests_and_changes_nothing_else(
    world: Path, generated: Callable[..., Path]
) -> None:
    root = generated("shapesworld", SIZE, workers=1, questions=3)
    for name in ("train.jsonl", "val.jsonl", "test.jsonl"):  # own stream: rows unchanged
        assert (root / name).read_bytes() == (world / name).read_bytes(), name
    card, rows = read_card(root), read_rows(root)
    assert card["generator"]["questions"] == 3
    by_id = {row["id"]: row for row in all_rows(world)}
    for split in ("train", "val", "test"):
        vqa = rows[f"{split}_vqa"]
        manifest = {"manifest": f"{split}_vqa.jsonl", "size": len(vqa)}
        assert card["splits"][f"{split}_vqa"] == manifest
        assert {row["id"].rsplit("-", 1)[0] for row in vqa} == {row["id"] for row in rows[split]}
        for row in vqa:
            scene_row = by_id[row["id"].rsplit("-", 1)[0]]
            assert set(row) == set(shapesworld.VQA_FIELDS)
            assert (row["image"], row["scene"]) == (scene_row["image"], scene_row["scene"])
            objects = _objects(Scene(parse_scene(row["scene"])))
            assert row["answer"] == _expected_answer(row["question"], objects), row
    own = [row for row in all_rows(root) if row["id"].endswith("-q0")]
    assert [(r["question"], r["answer"]) for r in own] == [
        (by_id[r["id"][:-3]]["question"], by_id[r["id"][:-3]]["answer"]) for r in own
    ]
    assert len(all_rows(root)) > SIZE * 4 * 0.9  # the scene row + (own + 3 extra) per scene
    # the script's path, from a manifest row alone, gives exactly the generator's rows
    first = rows["train"][0]
    assert shapesworld.vqa_rows(first, 0, shapesworld.row_index(first["id"]), 3) == [
        row for row in rows["train_vqa"] if row["id"].startswith(f"{first['id']}-")
    ]


def test_vqa_questions_script_rebuilds_the_generators_manifest(
    world: Path, generated: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "vqa_questions.py"
    out = tmp_path / "train_vqa.jsonl"
    argv = [str(script), str(world / "train.jsonl"), "--count", "3", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")  # the dataset without the option
    expected = generated("shapesworld", SIZE, workers=1, questions=3) / "train_vqa.jsonl"
    assert out.read_bytes() == expected.read_bytes()


def test_vqa_manifests_pass_the_data_layer_check(generated: Callable[..., Path]) -> None:
    from omnifuse.data.check import check_dataset

    root = generated("shapesworld", SIZE, workers=1, questions=3)
    report = check_dataset(root)
    assert report.ok, report.problems[:5]
    assert report.rows == len(all_rows(root))


def test_bad_options_name_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid: modalities, missing, workers, flite, questions"):
        make("shapesworld", tmp_path, size=2, progress=False, colours=3)
    with pytest.raises(ValueError, match="valid: image, audio, video"):
        make("shapesworld", tmp_path, size=2, progress=False, modalities=("text",))
    with pytest.raises(ValueError, match=r"missing=1.0 must be in \[0, 1\)"):
        make("shapesworld", tmp_path, size=2, progress=False, missing=1.0)
    with pytest.raises(ValueError, match=r"questions=-1 must be an integer >= 0"):
        make("shapesworld", tmp_path, size=2, progress=False, questions=-1)
    with pytest.raises(ValueError, match=r"questions='8' must be an integer >= 0"):
        make("shapesworld", tmp_path, size=2, progress=False, questions="8")


def test_row_index_inverts_row_id() -> None:
    assert shapesworld.row_index(shapesworld.row_id(17)) == 17
    with pytest.raises(ValueError, match="bad shapesworld id 'em-0001'"):
        shapesworld.row_index("em-0001")


def test_scene_text_round_trips() -> None:
    scene = sample_scene(sample_rng(0, 11), count=4)
    parsed = parse_scene(scene.describe())
    assert [(o.shape, o.colour, o.size, o.x, o.y, o.radius) for o in parsed] == [
        (o.shape, o.colour, o.size, o.x, o.y, o.radius) for o in scene.objects
    ]
    with pytest.raises(ValueError, match="bad scene item"):
        parse_scene("huge red circle at 1,2 r3")
    assert isinstance(parsed[0], SceneObject)


def test_flite_option_pins_the_voice_pool(
    generated: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = generated("shapesworld", 12, workers=1, modalities=("audio",), flite=False)
    assert all(row["voice"].startswith("espeak:") for row in all_rows(root))
    assert read_card(root)["generator"]["flite"] is False
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingResourceError, match="sudo apt-get install flite"):
        make("shapesworld", tmp_path, size=2, progress=False, flite=True)
