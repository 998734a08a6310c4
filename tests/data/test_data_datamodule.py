"""DataModule with the real processors of the ``tiny`` preset, and resume through Lightning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from data_helpers import CharProcessor, write_jsonl

from omnifuse.config import load_config
from omnifuse.config.data import DataConfig
from omnifuse.config.model import ModelConfig
from omnifuse.data.datamodule import OmnifuseDataModule
from omnifuse.data.shards import write_shards
from omnifuse.modalities.base import MediaError

Media = dict[str, Callable[..., Path]]


@pytest.fixture(scope="module")
def tiny_model() -> ModelConfig:
    return load_config("tiny").model


@pytest.fixture
def four_modalities(tmp_path: Path, media: Media) -> Path:
    """6 samples with text/image/audio/video; sample 1 lacks audio, sample 4 lacks video."""
    rows = []
    for i in range(6):
        row: dict[str, Any] = {"id": f"m{i}", "text": f"a red circle {i}", "label": "xy"[i % 2]}
        row["image"] = media["png"](f"i{i}.png", seed=i).name
        if i != 1:
            row["audio"] = media["wav"](f"a{i}.wav", seconds=0.2 + 0.1 * i, sample_rate=8000).name
        if i != 4:
            row["video"] = media["mp4"](f"v{i}.mp4", frames=3 + i, size=32).name
        rows.append(row)
    return write_jsonl(tmp_path / "val.jsonl", rows)


def test_batches_follow_the_spec(tiny_model: ModelConfig, four_modalities: Path) -> None:
    data = DataConfig(val=four_modalities, batch_size=3)
    module = OmnifuseDataModule(data, model=tiny_model)
    batches = list(module.val_dataloader())
    assert [b["ids"] for b in batches] == [["m0", "m1", "m2"], ["m3", "m4", "m5"]]
    first, second = batches
    inputs = first["inputs"]
    assert inputs["text"]["input_ids"].dtype == torch.long
    assert inputs["text"]["attention_mask"].dtype == torch.bool
    assert inputs["image"]["pixel_values"].shape == (3, 3, 32, 32)
    assert inputs["audio"]["features"].shape[::2] == (3, 32)
    assert inputs["audio"]["present"].tolist() == [True, False, True]
    assert not inputs["audio"]["mask"][1].any() and inputs["audio"]["mask"][2].any()
    assert inputs["video"]["pixel_values"].shape == (3, 4, 3, 32, 32)
    assert inputs["video"]["frame_mask"].dtype == torch.bool and "present" not in inputs["video"]
    assert second["inputs"]["video"]["present"].tolist() == [True, False, True]
    assert first["targets"]["label"].tolist() == [0, 1, 0]  # card inferred: classes x, y
    assert module.fields["label"].classes == ("x", "y")
    tested = OmnifuseDataModule(DataConfig(test=four_modalities, batch_size=3), model=tiny_model)
    assert [b["ids"] for b in tested.test_dataloader()] == [b["ids"] for b in batches]


def test_shards_and_manifest_give_identical_batches(
    tiny_model: ModelConfig, four_modalities: Path, tmp_path: Path
) -> None:
    write_shards(four_modalities, tmp_path / "shards", shard_size=4)
    local = list(
        OmnifuseDataModule(DataConfig(val=four_modalities), model=tiny_model).val_dataloader()
    )
    sharded = OmnifuseDataModule(DataConfig(val=tmp_path / "shards"), model=tiny_model)
    (remote,) = list(sharded.val_dataloader())
    (expected,) = local
    assert remote["ids"] == expected["ids"]
    for modality, tensors in expected["inputs"].items():
        for key, value in tensors.items():
            assert torch.equal(remote["inputs"][modality][key], value), (modality, key)


def test_augmented_training_resumes_exactly(tiny_model: ModelConfig, four_modalities: Path) -> None:
    model = tiny_model.model_copy(deep=True)
    assert model.encoders.image is not None
    model.encoders.image.processor.augment.enabled = True
    model.encoders.image.processor.augment.hflip = True
    data = DataConfig(train=four_modalities, batch_size=2, seed=3)

    def loader() -> Any:
        return OmnifuseDataModule(data, model=model).train_dataloader()

    full = [b["inputs"]["image"]["pixel_values"] for b in loader()]
    first = loader()
    iterator = iter(first)
    next(iterator)
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    rest = [b["inputs"]["image"]["pixel_values"] for b in resumed]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(rest, full[1:], strict=True))


def test_corrupt_image_error_and_skip(
    tiny_model: ModelConfig, four_modalities: Path, tmp_path: Path
) -> None:
    (tmp_path / "i2.png").write_bytes(b"\x89PNG broken")
    data = DataConfig(val=four_modalities, batch_size=6)
    with pytest.raises(MediaError, match=r"i2\.png: .*\[sample 'm2', .*val\.jsonl:3\]"):
        list(OmnifuseDataModule(data, model=tiny_model).val_dataloader())
    skip = data.model_copy(update={"on_bad_sample": "skip", "max_bad_fraction": 0.5})
    module = OmnifuseDataModule(skip, model=tiny_model)
    (batch,) = list(module.val_dataloader())
    assert "m2" not in batch["ids"] and len(batch["ids"]) == 5
    assert module.bad_samples == 1


def test_configuration_mistakes(
    tiny_model: ModelConfig, text_manifest: Callable[..., Path]
) -> None:
    with pytest.raises(ValueError, match="needs a model config or processors"):
        OmnifuseDataModule(DataConfig())
    with pytest.raises(ValueError, match=r"data\.train, data\.val and data\.test are unset"):
        OmnifuseDataModule(DataConfig(), model=tiny_model).setup()
    data = DataConfig(train=text_manifest(3), fields=["caption"])
    with pytest.raises(
        ValueError, match=r"'caption' is not a target field .* valid choices: label"
    ):
        OmnifuseDataModule(data, model=tiny_model).setup()
    with pytest.raises(ValueError, match="'image' is not a target field"):
        DataConfig(fields=["image"])


class _Recorder(L.LightningModule):
    """Trains a single weight and records the ids of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[str] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen.extend(batch["ids"])
        return (self.weight - batch["inputs"]["text"]["input_ids"].float().mean()).pow(2)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(data: DataConfig, root: Path, steps: int, ckpt: Path | None = None) -> list[str]:
    module = _Recorder()
    callbacks = [L.pytorch.callbacks.ModelCheckpoint(root, every_n_train_steps=5, save_top_k=-1)]
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, default_root_dir=root, limit_val_batches=0,
    )  # fmt: skip
    datamodule = OmnifuseDataModule(data, processors={"text": CharProcessor()})
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    return module.seen


def test_lightning_resumes_mid_epoch_with_the_same_batches(
    text_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    data = DataConfig(train=text_manifest(17), batch_size=3, num_workers=2)
    uninterrupted = _fit(data, tmp_path / "a", steps=9)  # 6 batches per epoch: epoch 0 + 3
    interrupted = _fit(data, tmp_path / "b", steps=5)
    (ckpt,) = (tmp_path / "b").glob("*step=5.ckpt")
    resumed = _fit(data, tmp_path / "c", steps=9, ckpt=ckpt)
    assert interrupted == uninterrupted[:15]
    assert resumed == uninterrupted[15:]
