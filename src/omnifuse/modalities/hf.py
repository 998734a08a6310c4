"""The one loading path of Hugging Face towers: a local directory (``config.json`` + weights +
processor files) -> a transformers model, behind the :class:`Encoder` contract.

Which transformers class loads a directory is data: each modality passes a table from the
checkpoint's ``model_type`` to a class name (e.g. ``"clip": "CLIPVisionModel"``), so a full
CLIP/SigLIP directory yields its vision tower and a Whisper directory its encoder. Nothing is
downloaded (directories only) and ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from omnifuse.modalities.base import Encoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
"""Weight files of an HF directory (``copy_hf_assets`` leaves them: omnifuse saves its own)."""


def read_model_type(path: Path) -> str:
    """``model_type`` of the HF directory ``path``.

    Raises:
        FileNotFoundError: ``path`` has no ``config.json``.
    """
    file = path / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"no config.json in HF model directory {path}")
    return str(json.loads(file.read_text()).get("model_type"))


def model_class_name(path: Path, classes: Mapping[str, str], what: str) -> str:
    """The transformers class that loads ``path`` as a ``what`` tower, from ``classes``.

    Raises:
        ValueError: a ``model_type`` the table does not list (the valid ones are named).
    """
    model_type = read_model_type(path)
    if model_type not in classes:
        raise ValueError(
            f"{path}/config.json has model_type={model_type!r}, not a supported {what} tower; "
            f"valid model types: {', '.join(sorted(classes))}"
        )
    return classes[model_type]


def load_hf_model(
    path: Path,
    pretrained: bool,
    class_name: str | None = None,
    optional: tuple[str, ...] = (),
    **kwargs: Any,
) -> PreTrainedModel:
    """A transformers model from the local directory ``path``, float32.

    Args:
        path: HF directory.
        pretrained: load its weights; False builds the architecture only (weights then come
            from an omnifuse checkpoint).
        class_name: a transformers model class (``"CLIPVisionModel"``); None: ``AutoModel``.
        optional: prefixes of weights the checkpoint may lack (modules the adapter drops,
            e.g. BERT's ``pooler.``).
        kwargs: extra model-config arguments (e.g. ``add_pooling_layer=False``).
    """
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in HF model directory {path}")
    import transformers

    cls = getattr(transformers, class_name or "AutoModel")
    if pretrained:
        model, info = cls.from_pretrained(
            str(path), dtype=torch.float32, output_loading_info=True, **kwargs
        )
        # transformers only warns about weights the checkpoint lacks: a tower that silently
        # keeps random weights is worse than an error. (Unexpected keys are normal: the text
        # tower of a full CLIP directory, a Whisper decoder.)
        missing = sorted(k for k in info.get("missing_keys", []) if not k.startswith(optional))
        if missing:
            raise ValueError(
                f"HF checkpoint at {path} lacks weights of {class_name or 'AutoModel'}: "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
            )
    elif class_name is None or class_name.startswith("Auto"):
        config = transformers.AutoConfig.from_pretrained(str(path))
        # Unannotated in transformers.
        model = cls.from_config(config, dtype=torch.float32, **kwargs)
    else:
        # The class's own config class reads a sub-config out of a composite directory too
        # (CLIPVisionConfig from a full CLIP config.json).
        config = cls.config_class.from_pretrained(str(path))
        model = cls._from_config(config, dtype=torch.float32, **kwargs)
    return cast("PreTrainedModel", model)


def copy_preprocessor(source: Path, directory: Path) -> Path:
    """Copy ``preprocessor_config.json`` from ``source`` into ``directory`` (returned)."""
    file = source / PREPROCESSOR_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no {PREPROCESSOR_FILE} in HF model directory {source}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PREPROCESSOR_FILE).write_text(file.read_text())
    return directory


def copy_hf_assets(source: Path, directory: Path) -> Path:
    """Copy every file of the HF directory ``source`` except its weights (config, generation
    config, tokenizer and processor files, whatever their kind) into ``directory`` (returned).

    Weight files and their shard indexes stay behind: an omnifuse checkpoint carries the
    weights, so the copy plus ``model.safetensors`` rebuilds the module without ``source``.
    """
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in HF model directory {source}")
    directory.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.iterdir()):
        weights = file.name.endswith(WEIGHT_SUFFIXES) or file.name.endswith(".index.json")
        if file.is_file() and not weights:
            shutil.copyfile(file, directory / file.name)
    return directory


def read_json_file(path: Path, name: str, why: str) -> dict[str, Any]:
    """The JSON object in file ``name`` of the local HF directory ``path``.

    Raises:
        FileNotFoundError: no such file (the message says ``why`` it is needed).
        ValueError: the file holds something else than a JSON object.
    """
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"no {name} in HF model directory {path}; {why}")
    data = json.loads(file.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a JSON object")
    return data


def read_preprocessor(path: Path) -> dict[str, Any]:
    """The directory's ``preprocessor_config.json`` (feature extractor / image processor)."""
    why = "the tower's processor settings (mean/std/size or feature extractor) come from it"
    return read_json_file(path, PREPROCESSOR_FILE, why)


class SavesPreprocessor:
    """Mixin of processors configured from an HF directory: saving copies that directory's
    ``preprocessor_config.json`` into the model directory and points the config at the copy."""

    source: Path

    def save(self, directory: Path) -> dict[str, Any]:
        """Copy ``preprocessor_config.json`` into ``directory``; returns ``{"path": directory}``."""
        return {"path": copy_preprocessor(self.source, directory)}


class HFTower(Encoder):
    """Shared plumbing of HF towers: freezing, gradient checkpointing, saving the architecture.

    Args:
        model: the transformers module that does the work.
        dim: output width.
        freeze: keep the backbone's weights fixed (no gradients, dropout off).
    """

    def __init__(self, model: nn.Module, dim: int, freeze: bool = False) -> None:
        super().__init__()
        self.model = model
        self.dim = dim
        self.frozen = freeze
        if freeze:
            self.model.requires_grad_(False)
            self.train(self.training)

    def train(self, mode: bool = True) -> HFTower:
        super().train(mode)
        if self.frozen:
            self.model.train(False)  # a frozen backbone keeps dropout off in training too
        return self

    @property
    def hf_model(self) -> PreTrainedModel:
        return cast("PreTrainedModel", self.model)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Through transformers' own switch (see ``TextHFEncoder``)."""
        if enabled:
            self.hf_model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            # Unannotated in transformers.
            self.hf_model.activation_checkpointing_disable()  # type: ignore[no-untyped-call]

    def save_assets(self, directory: Path) -> dict[str, Any]:
        """Write the HF ``config.json`` so the architecture rebuilds without the original dir."""
        directory.mkdir(parents=True, exist_ok=True)
        self.hf_model.config.save_pretrained(str(directory))
        return {"path": directory}
