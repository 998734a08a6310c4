"""Pipeline: load a run or model dir, serve every task type, map requests to tasks, fail clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import omnifuse
from omnifuse.config import load_config
from omnifuse.config.data import DataConfig
from omnifuse.data.card import read_card
from omnifuse.inference import DecodingOptions, InferenceError, Pipeline
from omnifuse.modalities.base import MediaError
from omnifuse.tasks import ClassificationTask


def val_rows(data_dir: Path) -> list[dict[str, str]]:
    lines = (data_dir / "val.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def media(data_dir: Path) -> dict[str, list[str]]:
    rows = val_rows(data_dir)
    return {
        "image": [str(data_dir / r["image"]) for r in rows],
        "audio": [str(data_dir / r["audio"]) for r in rows],
        "text": [r["text"] for r in rows],
        "question": [r["question"] for r in rows],
    }


def test_predict_returns_the_structure_of_every_task_type(
    pipe: Pipeline, media: dict[str, list[str]]
) -> None:
    image, text = media["image"], media["text"]
    shape = pipe.predict("shape", image=image)
    assert len(shape) == 2 and set(shape[0]) == {"label", "index", "score", "scores"}
    assert sum(shape[0]["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert shape[0]["score"] == max(shape[0]["scores"].values())
    assert pipe.predict("itm", image=image, text=text)[1]["label"] in {"matched", "unmatched"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("caption", {"image": image}),
        ("asr", {"audio": media["audio"][:1]}),
    ]
    answers = pipe.predict("answer", image=image, text=media["question"])
    names = pipe.task("answer").class_names  # type: ignore[attr-defined]  # a classifier
    assert len(answers) == 2 and answers[0]["label"] in names
    for task, inputs in cases:
        out = pipe.predict(task, **inputs)
        assert len(out) == len(next(iter(inputs.values())))
        assert all(set(o) == {"text"} and isinstance(o["text"], str) for o in out)
    pairs = pipe.predict("itc", image=image, text=text)
    assert len(pairs[0]["embeddings"]["image"]) == 16 and -1.0 <= pairs[0]["similarity"] <= 1.0
    assert "similarity" not in pipe.predict("itc", text=text)[0]
    filled = pipe.predict("mlm", text=["a [MASK] circle", "no mask here"])
    assert [m["position"] for m in filled[0]["masks"]] == [3] and filled[1]["masks"] == []
    assert len(filled[0]["masks"][0]["tokens"]) == 5
    mim = pipe.predict("mim", image=image)
    assert mim[0]["masked"] > 0 and mim[0]["reconstruction_mse"] > 0


def test_classify_returns_the_card_class_names(
    pipe: Pipeline, media: dict[str, list[str]], data_dir: Path
) -> None:
    classes = read_card(data_dir / "card.yaml").fields["label"].classes
    out = pipe.classify("shape", image=media["image"])
    assert classes is not None and list(out[0]["scores"]) == classes
    assert all(o["label"] in classes for o in out)
    task = pipe.task("shape")
    assert isinstance(task, ClassificationTask)
    probs = task.probabilities(pipe.model, pipe.process("shape", {"image": media["image"]}))
    assert out[0]["label"] == classes[int(probs[0].argmax())] and out[0]["index"] == int(
        probs[0].argmax()
    )


def test_caption_transcribe_answer_pick_their_tasks(
    pipe: Pipeline, media: dict[str, list[str]]
) -> None:
    image = media["image"]
    assert pipe.caption(image) == [p["text"] for p in pipe.predict("caption", image=image)]
    beams = pipe.caption(image, DecodingOptions("beam", beam_size=2, max_length=4))
    assert len(beams) == 2 and all(isinstance(t, str) for t in beams)
    assert len(pipe.transcribe(media["audio"])) == 2
    assert pipe.answer(image, media["question"]) == [
        p["label"] for p in pipe.predict("answer", image=image, text=media["question"])
    ]


def test_embed_uses_projection_heads_else_pooled(
    pipe: Pipeline, media: dict[str, list[str]]
) -> None:
    images = pipe.embed("image", media["image"])
    assert images.shape == (2, 16)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(2))
    assert pipe.embed("audio", media["audio"]).shape == (2, 32)  # no projection: pooled


def test_request_errors_name_the_problem(pipe: Pipeline, media: dict[str, list[str]]) -> None:
    image = media["image"]
    with pytest.raises(
        InferenceError, match=r"unknown task 'nope'; the run's tasks: shape \(classification\), itc"
    ):
        pipe.classify("nope", image=image)
    with pytest.raises(InferenceError, match="task 'itm' reads image, text: missing input text"):
        pipe.classify("itm", image=image)
    with pytest.raises(InferenceError, match="it does not read audio"):
        pipe.classify("shape", image=image, audio=media["audio"])
    with pytest.raises(InferenceError, match=r"inputs differ in length \(image: 2, text: 1\)"):
        pipe.classify("itm", image=image, text=["one"])
    with pytest.raises(InferenceError, match="several tasks can classify: shape, itm"):
        pipe.classify(image=image)
    with pytest.raises(InferenceError, match=r"task 'shape' \(classification\) cannot caption"):
        pipe.caption(image, task="shape")
    with pytest.raises(InferenceError, match="image: pass a list with one entry per sample"):
        pipe.classify("shape", image=image[0])
    with pytest.raises(MediaError, match=r"missing\.png: file not found"):
        pipe.classify("shape", image=["/nowhere/missing.png"])
    with pytest.raises(InferenceError, match=r"several tasks can predict: shape, itc.*; name one"):
        pipe.predict(image=image)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Pipeline.load(tmp_path / "absent")
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(InferenceError, match="training has not finished"):
        Pipeline.load(tmp_path)
    (tmp_path / "run.json").unlink()
    with pytest.raises(InferenceError, match="neither a run directory"):
        Pipeline.load(tmp_path)


def test_model_dir_and_unknown_classes(tiny_run: Path, media: dict[str, list[str]]) -> None:
    model_only = Pipeline.load(tiny_run / "model", device="cpu")
    assert model_only.tasks == Pipeline.load(tiny_run, device="cpu").tasks
    no_card = model_only.config.model_copy(update={"data": DataConfig()})
    blind = Pipeline(model_only.model, model_only.processors, no_card, device="cpu")
    with pytest.warns(UserWarning, match="class names of task 'shape' are unavailable"):
        out = blind.classify("shape", image=media["image"])
    assert all(isinstance(o["label"], int) and 0 <= o["label"] < 6 for o in out)
    assert list(out[0]["scores"]) == [str(i) for i in range(6)]


def video_pipeline() -> Pipeline:
    """The tiny preset with a video generator head and one video_generation task (untrained)."""
    overrides = [
        "model.heads={generator: {type: video_generator, source: text}}",
        "tasks={gen: {type: video_generation, head: generator}}",
    ]
    run = load_config("tiny", overrides)
    model, processors = omnifuse.create_model("tiny", overrides)
    return Pipeline(model, processors, run, device="cpu")


def test_generate_video_writes_clips_and_checks_the_contract(tmp_path: Path) -> None:
    pipe = video_pipeline()
    paths = pipe.generate_video(["a red circle", "a blue square"], tmp_path)
    assert [[p.name for p in row] for row in paths] == [
        ["video_000.mp4", "video_000.gif"],
        ["video_001.mp4", "video_001.gif"],
    ]
    assert all(p.stat().st_size > 0 for row in paths for p in row)
    assert pipe.predict("gen", None, tmp_path / "p", text=["x"]) == [
        {"files": [str(tmp_path / "p" / "video_000.mp4"), str(tmp_path / "p" / "video_000.gif")]}
    ]
    with pytest.raises(InferenceError, match="writes clips; pass an output directory"):
        pipe.predict("gen", text=["x"])
    head = pipe.model.heads["generator"]
    head.generate = lambda features, **_: torch.full((1, 2, 3, 8, 8), 3.0)  # type: ignore[method-assign]
    with pytest.raises(InferenceError, match=r"head 'generator' generated values in .* \[0, 1\]"):
        pipe.generate_video(["x"], tmp_path / "bad")


ROUTES = {
    "shape": ({"image": "image"}, {"shape"}),
    "itc": ({"image": "image", "text": "text"}, {"image_embed", "text_embed"}),
    "itm": ({"image": "image", "text": "text"}, {"itm"}),
    "mlm": ({"text": "text"}, {"mlm"}),
    "mim": ({"image": "image"}, {"recon"}),
    "caption": ({"image": "image"}, {"captioner"}),
    "asr": ({"audio": "audio"}, {"asr"}),
    "answer": ({"image": "image", "text": "question"}, {"vqa"}),
}


@pytest.mark.parametrize("task", sorted(ROUTES))
def test_each_task_predicts_with_its_own_heads_in_one_encoder_pass(
    pipe: Pipeline, media: dict[str, list[str]], task: str
) -> None:
    columns, heads = ROUTES[task]
    calls: list[str] = []
    # Decoders run through ``step``, not ``forward``: hook every submodule of a head.
    hooks = [
        sub.register_forward_hook(lambda *_, name=f"head:{name}": calls.append(name))
        for name, head in pipe.model.heads.items()
        for sub in head.modules()
    ]
    hooks += [
        encoder.register_forward_hook(lambda *_, name=f"encoder:{name}": calls.append(name))
        for name, encoder in pipe.model.encoders.items()
    ]
    try:
        rows = pipe.predict(task, **{m: media[c] for m, c in columns.items()})
    finally:
        for hook in hooks:
            hook.remove()
    assert len(rows) == len(media["image"])
    assert {c.removeprefix("head:") for c in calls if c.startswith("head:")} == heads
    # Batched: each encoder runs once for the whole request, not once per sample.
    encoders = [c.removeprefix("encoder:") for c in calls if c.startswith("encoder:")]
    assert sorted(encoders) == sorted(set(encoders)) and set(encoders) <= set(columns)
