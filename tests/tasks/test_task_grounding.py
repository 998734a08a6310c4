"""``scene_grounding``: per-patch labels from the scene, on the image tower or the fusion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from task_helpers import build, check_contract, make_batch, overfit

from omnifuse.config import ConfigError, load_config
from omnifuse.datasets.render import COLOURS
from omnifuse.tasks import SceneGroundingTask

# tiny preset: 32-px images, 8-px patches -> a 4x4 grid of 16-px cells on the 64-px canvas
SCENES = [
    "large red star at 40,24 r12",
    "small blue circle at 8,8 r6; large green square at 44,44 r12",
    "large yellow hexagon at 24,40 r13",
    "small purple triangle at 56,8 r7; large red circle at 20,20 r11",
]
HEADS = {
    "image": "model.heads.ground={type: token_classification, num_classes: 14}",
    "fused": "model.heads.ground={type: token_classification, num_classes: 14, source: fused}",
}
TASK = "tasks.ground={type: scene_grounding, head: ground}"


def grounding(source: str, media: dict[str, Callable[..., Path]]) -> tuple[object, ...]:
    model, processors, tasks = build([], [HEADS[source], TASK])
    batch = make_batch(processors, media)
    batch["targets"]["scene"] = list(SCENES)
    return model, tasks["ground"], batch


@pytest.mark.parametrize("source", ["image", "fused"])
def test_contract(source: str, media: dict[str, Callable[..., Path]]) -> None:
    model, task, batch = grounding(source, media)
    assert isinstance(task, SceneGroundingTask) and task.grid == 4
    assert task.inputs == (("image",) if source == "image" else ("audio", "image", "text", "video"))
    out = task(model, batch)
    check_contract(out)
    assert set(out) == {
        "loss",
        "shape_accuracy",
        "shape_object_accuracy",
        "colour_accuracy",
        "colour_object_accuracy",
    }


@pytest.mark.parametrize("source", ["image", "fused"])
def test_overfits_one_batch(source: str, media: dict[str, Callable[..., Path]]) -> None:
    torch.manual_seed(0)
    model, task, batch = grounding(source, media)
    first, last = overfit(task, model, batch, steps=60)  # type: ignore[arg-type]
    assert last < 0.2 * first
    out = task(model, batch)  # type: ignore[operator]
    assert float(out["shape_object_accuracy"]) == 1.0


def test_rows_without_a_scene_give_no_loss(media: dict[str, Callable[..., Path]]) -> None:
    model, task, batch = grounding("image", media)
    assert isinstance(batch, dict)
    batch["targets"]["scene"] = [None] * len(SCENES)
    out = task(model, batch)  # type: ignore[operator]
    assert float(out["loss"].detach()) == 0.0
    out["loss"].backward()


def test_labels_follow_the_scene(media: dict[str, Callable[..., Path]]) -> None:
    _model, task, _batch = grounding("image", media)
    assert isinstance(task, SceneGroundingTask)
    labels = task.labels(SCENES, torch.device("cpu"))
    assert labels.shape == (4, 16, 2)
    # scene 0: the star (shape 4 of 6 -> label 4, red -> 1) covers the patch at row 1, col 2
    assert labels[0, 1 * 4 + 2].tolist() == [4, 1]
    assert labels[0, 15].tolist() == [0, 0]


def test_missing_target_field_is_named(media: dict[str, Callable[..., Path]]) -> None:
    model, task, batch = grounding("image", media)
    assert isinstance(batch, dict)
    del batch["targets"]["scene"]
    with pytest.raises(KeyError, match="'scene'"):
        task(model, batch)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [
                HEADS["image"],
                "tasks.ground={type: scene_grounding, head: ground, attributes: [shape]}",
            ],
            r"num_classes=14 but tasks.ground.attributes=\['shape'\] need 7",
        ),
        (
            [
                "model.heads.ground={type: token_classification, num_classes: 14, source: text}",
                TASK,
            ],
            "reads 'text'; valid choices: 'image', 'fused'",
        ),
        (
            ["model.heads.ground={type: classification, num_classes: 14}", TASK],
            "needs a head of type 'token_classification'",
        ),
    ],
)
def test_config_errors_name_field_and_choices(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides)


def test_unknown_attribute_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="attributes"):
        load_config(
            "tiny",
            [
                HEADS["image"],
                "tasks.ground={type: scene_grounding, head: ground, attributes: [texture]}",
            ],
        )


def test_predict_maps_every_patch_to_a_name(media: dict[str, Callable[..., Path]]) -> None:
    from omnifuse.tasks import PredictOptions

    model, task, batch = grounding("image", media)
    assert isinstance(task, SceneGroundingTask) and isinstance(batch, dict)
    (first, *_) = task.predict(model, {"image": batch["inputs"]["image"]}, PredictOptions())
    assert set(first) == {"shape", "colour"}
    assert len(first["shape"]) == 4 and all(len(row) == 4 for row in first["shape"])
    assert {n for row in first["colour"] for n in row} <= {"empty", *COLOURS}
