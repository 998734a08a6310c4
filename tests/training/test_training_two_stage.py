"""The LLaVA-style two-stage presets on a tiny random LM: stage 1 trains the projector only,
stage 2 (``init_from`` stage 1) the projector and LoRA on the LM; nothing else moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import omnifuse
from lm_helpers import write_conversations
from omnifuse.config import load_config
from omnifuse.data.importers import ImportOptions, import_conversations
from omnifuse.models.adapter_io import ADAPTERS_DIR, MERGED_DIR
from omnifuse.models.adapters import base_name
from omnifuse.training import train
from omnifuse.training.optim import PARAMS_FILE

TINY_PARTS = [
    "model.encoders.image={type: vit, dim: 32, num_layers: 1, num_heads: 2, patch_size: 16, "
    "processor: {image_size: 32}}",
    "model.fusion={type: concat, dim: 32, num_layers: 1, num_heads: 2}",
    "model.heads.lm.max_new_tokens=8",
    "data.batch_size=2",
    "data.augment=false",
    "training.max_steps=3",
    "training.schedule.warmup_steps=0",
    "training.progress_bar=false",
    "training.checkpoint.every_n_steps=3",
]


@pytest.fixture(scope="module")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("convs")
    import_conversations(
        write_conversations(root / "source"),
        root / "data",
        options=ImportOptions(val_fraction=0.0, copy_media=True),
    )
    return root / "data" / "train.jsonl"


def weights(run_dir: Path, sub: str = "model") -> dict[str, torch.Tensor]:
    return load_file(run_dir / sub / "model.safetensors")


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    """Names (of ``after``) whose tensor differs from ``before``'s under the same base name."""
    by_base = {base_name(n): t for n, t in before.items()}
    old = {n: by_base.get(base_name(n)) for n in after}
    return {n for n, t in after.items() if (o := old[n]) is not None and not torch.equal(t, o)}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_two_stage_presets_train_only_the_intended_parameters(
    kind: str, tiny_lm_dirs: dict[str, Path], conversations: Path, tmp_path: Path
) -> None:
    parts = [
        *TINY_PARTS,
        f"model.heads.lm.path={tiny_lm_dirs[kind]}",
        f"data.train={conversations}",
    ]
    stage1 = load_config("llava-stage1", parts)
    torch.manual_seed(0)
    initial, _ = omnifuse.models.build_model(stage1.model)
    start = {n: t.detach().clone() for n, t in initial.state_dict().items()}
    first = train(stage1, tmp_path / "stage1")
    one = weights(first.run_dir)
    moved = changed(start, one)
    assert moved and all(n.startswith("heads.lm.projector.") for n in moved), sorted(moved)
    assert {n for n in one if n.startswith("heads.lm.projector.")} <= moved
    counts = json.loads((first.run_dir / PARAMS_FILE).read_text())
    projector = counts["components"]["heads.lm"]["trainable"]
    assert (
        counts["trainable"]
        == projector
        == sum(t.numel() for n, t in one.items() if n.startswith("heads.lm.projector."))
    )

    stage2 = load_config("llava-stage2", [*parts, f"training.init_from={first.run_dir}"])
    second = train(stage2, tmp_path / "stage2")
    assert second.init_report is not None and not second.init_report.mismatched
    assert all("lora_" in n for n in second.init_report.missing)  # only the new adapters
    two = weights(second.run_dir)
    moved = changed(one, two)
    lora = {n for n in two if "lora_B" in n}  # A moves too, but B is what starts at zero
    assert len(lora) == 2 * 4 and all(bool(two[n].abs().sum() > 0) for n in lora)
    assert {n for n in two if n.startswith("heads.lm.projector.")} <= moved
    assert all(n.startswith("heads.lm.projector.") for n in moved), sorted(moved)
    assert not any(n.startswith(("encoders.", "fusion.")) for n in changed(start, two))
    counts = json.loads((second.run_dir / PARAMS_FILE).read_text())
    adapter = sum(t.numel() for n, t in two.items() if "lora_" in n)
    assert counts["adapter"] == {"total": adapter, "trainable": adapter}
    assert counts["trainable"] == adapter + projector

    merged = omnifuse.load(second.run_dir / MERGED_DIR)
    assert merged.config.model.adapters == {}
    assert not any("lora_" in n for n in merged.model.state_dict())
    assert (second.run_dir / ADAPTERS_DIR / "adapters.safetensors").is_file()
