"""``masked_modeling`` task and the encoders' ``token_mask`` hook."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from task_helpers import build, check_contract, make_batch, overfit
from torch import Tensor, nn

from omnifuse.config import load_config
from omnifuse.modalities.audio.encoder import AudioTransformer
from omnifuse.modalities.image.encoder import ViT
from omnifuse.models import build_model, load, save
from omnifuse.tasks import MaskedModelingTask

CASES = [("masked_image", "image"), ("masked_audio", "audio")]


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_contract(name: str, modality: str, media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build([name])
    out = tasks[name](model, make_batch(processors, media, (modality,)))
    check_contract(out)
    assert set(out) == {"loss", "num_masked"} and float(out["num_masked"]) > 0


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_loss_ignores_visible_tokens(
    name: str, modality: str, media: dict[str, Callable[..., Path]]
) -> None:
    model, processors, tasks = build([name])
    task = tasks[name]
    assert isinstance(task, MaskedModelingTask)
    seen: dict[str, Tensor] = {}

    def capture(module: nn.Module, args: tuple[Any, ...]) -> None:
        args[0].retain_grad()
        seen["pred"], seen["mask"] = args[0], args[2]

    task.objective.register_forward_pre_hook(capture)
    task(model, make_batch(processors, media, (modality,)))["loss"].backward()
    grad, mask = seen["pred"].grad, seen["mask"]
    assert grad is not None and mask.any() and (~mask).any()
    assert torch.count_nonzero(grad[~mask]) == 0
    assert bool((grad[mask].abs().sum(dim=-1) > 0).all())


def _stack_input(encoder: nn.Module, stack: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """The tensor entering the encoder's Transformer stack."""
    seen: list[Tensor] = []
    handle = stack.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    encoder(inputs)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_token_mask_changes_only_masked_positions(
    name: str, modality: str, media: dict[str, Callable[..., Path]]
) -> None:
    model, processors, _ = build([name])
    encoder = model.encoder(modality).eval()
    if isinstance(encoder, ViT):
        stack, pos = encoder.blocks, encoder.pos_embed[0, 2]  # patch 1 sits after [CLS]
    else:
        assert isinstance(encoder, AudioTransformer)
        stack, pos = encoder.transformer, encoder.positions[1]
    inputs = make_batch(processors, media, (modality,), size=2)["inputs"][modality]
    plain = _stack_input(encoder, stack, inputs)
    offset = 1 if modality == "image" else 0  # the ViT's [CLS] token is never masked
    token_mask = torch.zeros(plain.shape[0], plain.shape[1] - offset, dtype=torch.bool)
    token_mask[0, 1] = token_mask[1, 3] = True
    masked = _stack_input(encoder, stack, {**inputs, "token_mask": token_mask})
    changed = (masked != plain).any(dim=-1)[:, offset:]
    assert torch.equal(changed, token_mask)
    mask_token = encoder.mask_token
    assert mask_token is not None
    torch.testing.assert_close(masked[0, 1 + offset], mask_token.reshape(-1) + pos)


def test_mask_token_exists_only_with_a_reconstruction_head() -> None:
    plain, _ = build_model(load_config("tiny").model)
    assert getattr(plain.encoder("image"), "mask_token", "missing") is None
    pixels = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="has no mask token for 'token_mask'"):
        plain.encoder("image")({"pixel_values": pixels, "token_mask": torch.ones(1, 16).bool()})
    model, _, _ = build(["masked_image"])
    assert "encoders.image.mask_token" in model.state_dict()
    assert "encoders.audio.mask_token" in model.state_dict()  # the audio_rec head
    with pytest.raises(ValueError, match=r"expected \(1, 16\) \(one entry per patch"):
        model.encoder("image")({"pixel_values": pixels, "token_mask": torch.ones(1, 17).bool()})


def test_reconstruction_head_survives_save_and_load(tmp_path: Path) -> None:
    model, processors, _ = build(["masked_image"])
    loaded = load(save(tmp_path / "m", model, processors)).model
    torch.testing.assert_close(
        loaded.encoder("image").mask_token, model.encoder("image").mask_token
    )


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_overfits_a_fixed_batch(
    name: str, modality: str, media: dict[str, Callable[..., Path]]
) -> None:
    model, processors, tasks = build([name])
    # Two noise images: a 32-wide ViT can memorise their hidden patches; masks repeat per step.
    batch = make_batch(processors, media, (modality,), size=2)
    first, last = overfit(tasks[name], model, batch, steps=80, lr=3e-3, reseed=1)
    assert last < first / 3
