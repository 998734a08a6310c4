"""Save -> load gives the same model, processors and bit-identical outputs; no pickle."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import omnifuse
from omnifuse import ConfigError, create_model
from omnifuse.models import MultimodalModel, Processors


def outputs(
    model: MultimodalModel, processors: Processors, raws: dict[str, list[Any]]
) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model({m: processors[m](raws[m]) for m in processors})
    return torch.cat([out.fused.pooled, *out.heads.values()], dim=-1)


@pytest.fixture
def raws(media: dict[str, Callable[..., Path]]) -> dict[str, list[Any]]:
    return {
        "text": ["a red circle", "the blue square moves left"],
        "image": [media["png"]("a.png"), media["png"]("b.png", seed=3)],
        "audio": [media["wav"]("a.wav"), media["wav"]("b.wav", seconds=0.2)],
        "video": [media["mp4"]("a.mp4"), media["mp4"]("b.mp4", frames=5)],
    }


def test_round_trip_is_bit_identical(tmp_path: Path, raws: dict[str, list[Any]]) -> None:
    model, processors = create_model("tiny")
    before = outputs(model, processors, raws)
    path = omnifuse.save(tmp_path / "m", model, processors)
    assert sorted(p.name for p in path.iterdir() if p.is_file()) == [
        "config.yaml",
        "model.safetensors",
    ]
    assert not list(path.rglob("*.pt")) and not list(path.rglob("*.pkl"))
    loaded, loaded_processors, config = omnifuse.load(path)
    assert config.model.fusion == model.config.fusion and config.model.heads == model.config.heads
    assert torch.equal(outputs(loaded, loaded_processors, raws), before)


def test_directory_can_move(tmp_path: Path, raws: dict[str, list[Any]]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["a red circle", "a blue square", "the star moves left"] * 20))
    model, processors = create_model(
        "tiny",
        [
            "model.encoders.text.tokenizer.type=bpe",
            "model.encoders.text.tokenizer.vocab_size=300",
            f"model.encoders.text.tokenizer.corpus=[{corpus}]",
        ],
    )
    before = outputs(model, processors, raws)
    omnifuse.save(tmp_path / "m", model, processors)
    corpus.unlink()  # the trained tokenizer must live in the model directory
    shutil.move(tmp_path / "m", tmp_path / "moved")
    loaded, loaded_processors, _ = omnifuse.load(tmp_path / "moved")
    assert torch.equal(outputs(loaded, loaded_processors, raws), before)
    saved = yaml.safe_load((tmp_path / "moved" / "config.yaml").read_text())
    path = saved["model"]["encoders"]["text"]["tokenizer"]["path"]
    assert not Path(path).is_absolute()


def test_hf_adapter_round_trip_without_source_dir(tmp_path: Path, tiny_hf_bert_dir: Path) -> None:
    source = tmp_path / "bert"
    shutil.copytree(tiny_hf_bert_dir, source)
    model, processors = create_model(
        "tiny",
        [
            "model.encoders.text={type: hf, path: " + str(source) + "}",
            "model.encoders.image=null",
            "model.encoders.audio=null",
            "model.encoders.video=null",
        ],
    )
    texts = {"text": ["the red circle", "a blue square moves right"]}
    before = outputs(model, processors, texts)
    omnifuse.save(tmp_path / "m", model, processors)
    shutil.rmtree(source)  # loading needs only the saved directory
    loaded, loaded_processors, _ = omnifuse.load(tmp_path / "m")
    assert torch.equal(outputs(loaded, loaded_processors, texts), before)


def test_save_replaces_atomically(tmp_path: Path) -> None:
    model, processors = create_model("tiny")
    omnifuse.save(tmp_path / "m", model, processors)
    torch.nn.init.zeros_(model.heads["classify"].net[-1].weight)
    omnifuse.save(tmp_path / "m", model, processors)
    loaded = omnifuse.load(tmp_path / "m").model
    assert torch.count_nonzero(loaded.heads["classify"].net[-1].weight) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp dirs left behind


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not an omnifuse model directory"):
        omnifuse.load(tmp_path)
