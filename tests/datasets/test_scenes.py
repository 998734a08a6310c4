"""``datasets.scenes.patch_labels``: the per-patch targets of ``scene_grounding``."""

from __future__ import annotations

import numpy as np
import pytest

from omnifuse.config.tasks import GROUNDING_ATTRIBUTES
from omnifuse.datasets.render import COLOURS, SHAPES
from omnifuse.datasets.scenes import PATCH_ATTRIBUTES, PATCH_IGNORE, patch_labels
from omnifuse.types import IGNORE_INDEX


def test_attribute_vocabularies_match_the_task_config() -> None:
    assert {a: len(v) for a, v in PATCH_ATTRIBUTES.items()} == GROUNDING_ATTRIBUTES
    assert PATCH_IGNORE == IGNORE_INDEX


def test_covered_patches_take_the_object_untouched_ones_are_empty() -> None:
    # a large red star centred on patch (row 2, col 5) of an 8x8 grid (8-px cells), radius 13
    labels = patch_labels("large red star at 44,20 r13", 8, ["shape", "colour", "size"])
    assert labels.shape == (64, 3)
    centre = 2 * 8 + 5
    star = 1 + SHAPES.index("star")
    assert labels[centre].tolist() == [star, 1 + list(COLOURS).index("red"), 2]
    assert labels[0].tolist() == [0, 0, 0]  # the top-left patch is far from the star
    assert labels[63].tolist() == [0, 0, 0]
    # the disc touches patches it barely covers: those are left unscored, not called empty
    assert (labels[:, 0] == PATCH_IGNORE).any()
    assert set(labels[:, 0].tolist()) == {0, star, PATCH_IGNORE}


def test_the_patch_takes_the_object_covering_most_of_it() -> None:
    scene = "small blue circle at 4,4 r5; large green square at 20,4 r11"
    labels = patch_labels(scene, 4, ["shape"])  # 16-px cells
    # patch 0: the square's disc covers 80 of its 256 pixels, the circle's 72
    assert labels[0, 0] == 1 + SHAPES.index("square")
    assert labels[1, 0] == 1 + SHAPES.index("square")  # the square's own patch
    assert labels[15, 0] == 0


def test_min_cover_decides_between_label_and_unscored() -> None:
    scene = "small red circle at 8,8 r5"  # a quarter of the disc in each of four patches
    strict = patch_labels(scene, 8, ["shape"], min_cover=0.9)
    loose = patch_labels(scene, 8, ["shape"], min_cover=0.1)
    corners = [0, 1, 8, 9]
    assert (strict[corners, 0] == PATCH_IGNORE).all()
    assert (loose[corners, 0] == 1 + SHAPES.index("circle")).all()


def test_a_missing_scene_scores_nothing_and_an_empty_one_is_all_empty() -> None:
    assert (patch_labels(None, 8, ["shape"]) == PATCH_IGNORE).all()
    assert (patch_labels("", 8, ["shape", "colour"]) == 0).all()


@pytest.mark.parametrize(
    ("grid", "attributes", "min_cover"),
    [(7, ["shape"], 0.25), (8, ["texture"], 0.25), (8, ["shape"], 0.0)],
)
def test_bad_arguments_are_named(grid: int, attributes: list[str], min_cover: float) -> None:
    with pytest.raises(ValueError, match=r"grid=.*min_cover="):
        patch_labels("small red circle at 8,8 r5", grid, attributes, min_cover)


def test_labels_are_long_integers() -> None:
    assert patch_labels("small red circle at 8,8 r5", 8, ["shape"]).dtype == np.int64
