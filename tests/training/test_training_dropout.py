"""Modality dropout: per-sample ``present`` masks, never every modality of a sample."""

from __future__ import annotations

import pytest
import torch

from omnifuse.training.callbacks import drop_modalities


def batch(
    size: int, image_present: torch.Tensor | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    inputs = {
        "image": {"pixel_values": torch.zeros(size, 3, 4, 4)},
        "text": {
            "input_ids": torch.zeros(size, 5, dtype=torch.long),
            "attention_mask": torch.ones(size, 5, dtype=torch.bool),
        },
    }
    if image_present is not None:
        inputs["image"]["present"] = image_present
    return inputs


def test_drop_rate_and_present_masks() -> None:
    inputs = batch(4000)
    dropped = drop_modalities(inputs, {"image": 0.3}, torch.Generator().manual_seed(0))
    rate = float(dropped["image"].float().mean())
    assert rate == pytest.approx(0.3, abs=0.03)  # > 4 standard deviations (0.007)
    assert torch.equal(inputs["image"]["present"], ~dropped["image"])
    assert "present" not in inputs["text"]  # text never dropped: untouched


def test_a_sample_always_keeps_one_modality() -> None:
    inputs = batch(500)
    drop_modalities(inputs, {"image": 0.9, "text": 0.9}, torch.Generator().manual_seed(1))
    image, text = inputs["image"]["present"], inputs["text"]["present"]
    assert bool((image | text).all())
    # dropped: drawn alone (0.9 * 0.1) or drawn with the other and not the one rescued (0.81 / 2)
    for present in (image, text):
        assert float((~present).float().mean()) == pytest.approx(0.495, abs=0.09)


def test_missing_modalities_count_as_already_gone() -> None:
    # samples 0-1 have no image: dropping their text would leave nothing, so it is kept
    inputs = batch(4, image_present=torch.tensor([False, False, True, True]))
    drop_modalities(inputs, {"text": 0.99}, torch.Generator().manual_seed(2))
    text = inputs["text"]["present"]
    assert text[:2].tolist() == [True, True]
    assert inputs["image"]["present"].tolist() == [False, False, True, True]


def test_same_generator_seed_same_drops() -> None:
    a, b = batch(64), batch(64)
    drop_modalities(a, {"image": 0.5}, torch.Generator().manual_seed(5))
    drop_modalities(b, {"image": 0.5}, torch.Generator().manual_seed(5))
    assert torch.equal(a["image"]["present"], b["image"]["present"])
