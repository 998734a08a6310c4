"""LoRA adapters (``model.adapters``) on our own layers, a causal LM and a Whisper tower/decoder:
only the adapter trains under its path, merging keeps the outputs, every save loads back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lm_helpers import CONVERSATIONS, KINDS, lm_run_config, write_image
from omnifuse.config.loader import ConfigError, validate_config
from omnifuse.config.run import RunConfig
from omnifuse.models import build_model, load, save
from omnifuse.models.adapter_io import (
    MERGED_DIR,
    adapter_state_dict,
    load_adapter_weights,
    save_adapter_variants,
    save_adapter_weights,
)
from omnifuse.models.adapters import base_name, merge_adapters
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks import build_tasks

MERGE_ATOL = 1e-5
"""Merged vs adapted outputs: W + s B A folded once instead of added per call (observed: 1.1e-6
our layers, 6e-8 Llama-style, 9e-8 Qwen2-style; the adapters change the outputs by 0.25-0.63)."""

LM_LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def tiny_run(**adapters: Any) -> RunConfig:
    """The tiny preset's image + text model with ``adapters``."""
    return validate_config(
        {
            "model": {
                "encoders": {
                    "text": {"type": "transformer", "dim": 32, "num_layers": 1, "num_heads": 2},
                    "image": {"type": "vit", "dim": 32, "num_layers": 1, "num_heads": 2,
                              "patch_size": 8, "processor": {"image_size": 32}},
                },
                "fusion": {"type": "concat", "dim": 32, "num_layers": 1, "num_heads": 2},
                "heads": {"classify": {"type": "classification", "num_classes": 3}},
                "adapters": adapters,
            }
        }
    )  # fmt: skip


def lm_run(lm_dir: Path, **adapters: Any) -> RunConfig:
    raw = lm_run_config(lm_dir)
    raw["model"]["adapters"] = adapters
    return validate_config(raw)


def seeded_build(run: RunConfig) -> tuple[MultimodalModel, Any]:
    torch.manual_seed(0)
    return build_model(run.model)


def image_inputs(model: MultimodalModel, processors: Any) -> dict[str, Any]:
    """Two images (and texts, if the model reads text)."""
    gen = torch.Generator().manual_seed(1)
    inputs: dict[str, Any] = {"image": {"pixel_values": torch.randn(2, 3, 32, 32, generator=gen)}}
    if "text" in model.modalities:
        inputs["text"] = processors["text"](["a red square", "a blue circle"])
    return inputs


def outputs(model: MultimodalModel, inputs: dict[str, Any]) -> Tensor:
    """Every head's output and every encoder's tokens, flattened (eval mode)."""
    model.eval()
    with torch.no_grad():
        out = model(inputs)
    parts = [out.heads[k].flatten() for k in sorted(out.heads)]
    parts += [out.encoded[m].tokens.flatten() for m in sorted(out.encoded)]
    return torch.cat(parts)


def randomise_adapters(model: nn.Module) -> None:
    """LoRA's B starts at zero (no change); give it values so merging has work to do."""
    torch.manual_seed(2)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param, std=0.2)


def test_lora_on_our_own_layers_freezes_only_its_module() -> None:
    plain, processors = seeded_build(tiny_run())
    adapted, _ = seeded_build(tiny_run(**{"encoders.image": LM_LORA}))
    lora = [n for n, _ in adapted.named_parameters() if "lora_" in n]
    assert lora == [
        f"encoders.image.blocks.layers.0.attn.{p}.lora_{ab}.default.weight"
        for p in ("q_proj", "v_proj")
        for ab in "AB"
    ]
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("encoders.image")} == set(lora)
    assert {"fusion.transformer.norm.weight", "encoders.text.transformer.norm.weight"} <= trainable
    # B = 0 at the start: the adapted model computes exactly what the plain one does
    inputs = image_inputs(plain, processors)
    assert torch.equal(outputs(plain, inputs), outputs(adapted, inputs))
    plain_names = {n for n, _ in plain.named_parameters()}
    assert {base_name(n) for n, _ in adapted.named_parameters() if "lora_" not in n} == plain_names


def lm_batch(processors: Any, tmp_path: Path) -> dict[str, Any]:
    paths = [write_image(tmp_path / f"{n}.png", c) for n, c, _ in CONVERSATIONS]
    convs = [
        [
            {"role": "user", "content": "<image>describe the input"},
            {"role": "assistant", "content": a},
        ]
        for _, _, a in CONVERSATIONS
    ]
    return {
        "inputs": {"image": processors["image"]([str(p) for p in paths])},
        "targets": {"messages": convs},
        "ids": ["0", "1"],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_training_moves_the_adapter_not_the_lm(
    kind: str, tiny_lm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    run = lm_run(tiny_lm_dirs[kind], **{"heads.lm.lm": LM_LORA})
    model, processors = seeded_build(run)
    task = build_tasks(run, model, processors)["chat"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = lm_batch(processors, tmp_path)
    model.train()
    for _ in range(3):  # B is zero at first, so A's gradient is zero on the first step
        optimiser.zero_grad()
        task.loss(model, batch)["loss"].backward()
        optimiser.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    lm = {n for n in before if n.startswith("heads.lm.lm.")}
    lora = {n for n in lm if "lora_" in n}
    assert len(lora) == 8 and lora <= moved  # 2 layers x (q, v) x (A, B)
    assert not (lm - lora) & moved  # the LM's own weights: bit-for-bit unchanged
    assert "heads.lm.projector.0.weight" in moved  # outside the adapter's path: trained
    assert "encoders.image.patch_embed.weight" in moved


@pytest.mark.parametrize("kind", ["native", *KINDS])
def test_merged_model_computes_what_the_adapted_one_did(
    kind: str, tiny_lm_dirs: dict[str, Path]
) -> None:
    run = (
        tiny_run(**{"encoders.image": LM_LORA, "fusion": {**LM_LORA, "target_modules": ["fc1"]}})
        if kind == "native"
        else lm_run(tiny_lm_dirs[kind], **{"heads.lm.lm": LM_LORA})
    )
    model, processors = seeded_build(run)
    randomise_adapters(model)
    inputs = image_inputs(model, processors)
    adapted = outputs(model, inputs)
    assert merge_adapters(model) == (3 if kind == "native" else 4)  # layers adapted
    names = [n for n, _ in model.named_parameters()]
    assert not any("lora_" in n or "base_layer" in n for n in names)
    merged = outputs(model, inputs)
    assert not torch.equal(adapted, seeded_outputs_without_adapters(run, inputs))
    torch.testing.assert_close(merged, adapted, atol=MERGE_ATOL, rtol=0)


def seeded_outputs_without_adapters(run: RunConfig, inputs: dict[str, Any]) -> Tensor:
    plain = run.model_copy(deep=True)
    plain.model.adapters = {}
    return outputs(seeded_build(plain)[0], inputs)


def block_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``import peft...`` fail, as on a machine without it."""
    for name in [n for n in sys.modules if n == "peft" or n.startswith("peft.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "peft", None)


def test_saved_adapted_merged_and_adapter_only_all_load_back(
    tiny_lm_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = lm_run(tiny_lm_dirs["qwen2"], **{"heads.lm.lm": LM_LORA})
    model, processors = seeded_build(run)
    randomise_adapters(model)
    inputs = image_inputs(model, processors)
    expected = outputs(model, inputs)
    save(tmp_path / "run" / "model", model, processors, run)
    reloaded = load(tmp_path / "run" / "model").model
    assert torch.equal(outputs(reloaded, inputs), expected)  # LoRA tensors saved and re-injected

    merged_dir, adapters_dir = save_adapter_variants(tmp_path / "run" / "model", tmp_path / "run")
    assert merged_dir == (tmp_path / "run" / MERGED_DIR).resolve()
    block_peft(monkeypatch)
    merged, _, config = load(merged_dir)
    monkeypatch.undo()
    assert config.model.adapters == {}
    assert not any("lora_" in n for n in merged.state_dict())
    torch.testing.assert_close(outputs(merged, inputs), expected, atol=MERGE_ATOL, rtol=0)

    # adapter-only: the same base (same seed, LM from its directory) + the saved LoRA tensors
    fresh, _ = seeded_build(run)
    assert not torch.equal(outputs(fresh, inputs), expected)
    load_adapter_weights(fresh, adapters_dir)
    assert torch.equal(outputs(fresh, inputs), expected)
    assert (adapters_dir / "adapters.yaml").read_text().startswith("heads.lm.lm:")


def test_adapter_only_save_of_other_adapters_is_refused(
    tiny_lm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model, _ = seeded_build(lm_run(tiny_lm_dirs["qwen2"], **{"heads.lm.lm": LM_LORA}))
    save_adapter_weights(model, {}, tmp_path / "a")
    assert len(adapter_state_dict(model)) == 8
    q_only = {**LM_LORA, "target_modules": ["q_proj"]}
    other, _ = seeded_build(lm_run(tiny_lm_dirs["qwen2"], **{"heads.lm.lm": q_only}))
    with pytest.raises(ConfigError, match=r"adapters\.safetensors does not fit .* unexpected"):
        load_adapter_weights(other, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"nope/adapters\.safetensors: cannot read"):
        load_adapter_weights(other, tmp_path / "nope")


def test_lora_on_a_whisper_tower_and_its_decoder(tiny_whisper_asr: Path) -> None:
    path = str(tiny_whisper_asr)
    run = validate_config(
        {
            "model": {
                "encoders": {"audio": {"type": "hf", "path": path}},
                "heads": {"asr": {"type": "whisper_decoder", "path": path, "max_length": 24}},
                "adapters": {"encoders.audio": LM_LORA, "heads.asr": LM_LORA},
            }
        }
    )
    model, _ = seeded_build(run)
    lora = [n for n, p in model.named_parameters() if "lora_" in n]
    assert any(n.startswith("encoders.audio.") for n in lora)
    assert any(n.startswith("heads.asr.") for n in lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n in trainable if not n.startswith("fusion.")] == lora
    randomise_adapters(model)
    features = {
        "audio": {"features": torch.randn(2, 100, 16), "mask": torch.ones(2, 100, dtype=torch.bool)}
    }
    model.eval()
    with torch.no_grad():
        adapted = model.encode(features)["audio"].tokens
        merge_adapters(model)
        merged = model.encode(features)["audio"].tokens
    torch.testing.assert_close(merged, adapted, atol=MERGE_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("adapters", "message"),
    [
        (
            {"heads.lm.lm": {**LM_LORA, "target_modules": ["q_projj"]}},
            r"model\.adapters\.heads\.lm\.lm\.target_modules: 'q_projj' matches no "
            r"Linear/Embedding/Conv layer of heads\.lm\.lm; layer names there: down_proj, "
            r"embed_tokens, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj",
        ),
        (
            {"heads.lm.llm": LM_LORA},
            r"model\.adapters: 'heads\.lm\.llm' is not a module of this model; module paths "
            r"include: encoders, encoders\.image, .*heads\.lm\.lm, heads\.lm\.projector",
        ),
    ],
)
def test_adapter_build_errors_name_what_exists(
    adapters: dict[str, Any], message: str, tiny_lm_dirs: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(lm_run(tiny_lm_dirs["llama"], **adapters).model)


@pytest.mark.parametrize(
    ("adapters", "message"),
    [
        (
            {"encoders.audio": LM_LORA},
            r"'encoders\.audio' is not inside a configured component; valid components: "
            r"encoders\.image, fusion, heads\.lm",
        ),
        ({"heads.lm": LM_LORA, "heads.lm.lm": LM_LORA}, "adapters may not nest"),
        (
            {"heads.lm.lm": {**LM_LORA, "type": "qlora"}},
            r"model\.adapters\.heads\.lm\.lm\.type: 'qlora' is not a valid choice; "
            r"valid choices: 'lora'",
        ),
        ({"heads.lm.lm": {"r": 4}}, r"model\.adapters\.heads\.lm\.lm\.target_modules: required"),
        (
            {"heads.lm.lm": {**LM_LORA, "r": 0}},
            r"model\.adapters\.heads\.lm\.lm\.r: .*greater than 0",
        ),
    ],
)
def test_adapter_config_errors_name_the_field(adapters: dict[str, Any], message: str) -> None:
    raw = lm_run_config(Path("lm"))
    raw["model"]["adapters"] = adapters
    with pytest.raises(ConfigError, match=message):
        validate_config(raw)


@pytest.mark.parametrize("kind", ["clip", "siglip", "vit", "dinov2"])
def test_lora_on_hf_image_towers(kind: str, tiny_hf_towers: dict[str, Path]) -> None:
    lora = LM_LORA  # transformers 5 names every one of these towers' projections q/k/v_proj
    tower = {"type": "hf", "path": str(tiny_hf_towers[kind])}
    run = validate_config(
        {"model": {"encoders": {"image": tower}, "adapters": {"encoders.image": lora}}}
    )
    model, processors = seeded_build(run)
    image = [n for n, _ in model.named_parameters() if n.startswith("encoders.image.")]
    trainable = [n for n in image if model.get_parameter(n).requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    randomise_adapters(model)
    side = processors["image"].config.image_size
    pixels = {"image": {"pixel_values": torch.randn(2, 3, side, side)}}
    adapted = outputs(model, pixels)
    merge_adapters(model)
    torch.testing.assert_close(outputs(model, pixels), adapted, atol=MERGE_ATOL, rtol=0)
