"""``export_hf(run_dir, out_dir)``: every part of a trained run that came from a Hugging Face
directory, written back as a standard HF directory (``config.json``, ``model.safetensors``, its
processor / tokenizer / generation files) that transformers' ``from_pretrained`` loads without
``trust_remote_code``, with the fine-tuned weights.

What is exported (``<out>/<component>/``):

- ``encoders/<modality>``: an ``hf`` tower (vision: CLIP/SigLIP vision, ViT, DINOv2, VideoMAE;
  the frame tower of a frame-wise video encoder; text ``AutoModel``; wav2vec2 / HuBERT), loaded
  back by the class omnifuse loaded it with (``CLIPVisionModel``, ``AutoModel``, ...);
- ``heads/<name>``: a ``causal_lm`` head's LM (``AutoModelForCausalLM``) with its tokenizer; a
  ``whisper_decoder`` head together with the run's Whisper audio encoder as one
  ``WhisperForConditionalGeneration`` (encoder, decoder, tied projection, generation config,
  tokenizer, feature extractor).

Everything else (native towers, the fusion, other heads, a ``causal_lm`` projector) has no HF
form; ``hf_export.json`` and the command's output list it with the reason.

:func:`export_hf_dual_encoder` writes a (fine-tuned) :class:`HFDualEncoder` back as a full
``CLIPModel`` / ``SiglipModel`` directory (both towers, projections, logit scale and bias,
tokenizer and image processor).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from torch import nn

from omnifuse.errors import InferenceError
from omnifuse.heads.causal_lm import CausalLMHead
from omnifuse.heads.whisper_decoder import WhisperDecoder
from omnifuse.inference.runs import locate
from omnifuse.modalities.audio.adapters import WhisperHFEncoder
from omnifuse.modalities.hf import WEIGHT_SUFFIXES, HFTower
from omnifuse.modalities.text.adapters import TextHFEncoder
from omnifuse.modalities.video.adapters import FramewiseVideoEncoder
from omnifuse.models.adapters import merge_adapters
from omnifuse.models.hf_dual_encoder import HFDualEncoder
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.models.persistence import load
from omnifuse.types import Processor

REPORT_FILE = "hf_export.json"
DUAL_ENCODER_CLASSES: dict[str, tuple[str, str]] = {
    "clip_text_model": ("CLIPConfig", "CLIPModel"),
    "siglip_text_model": ("SiglipConfig", "SiglipModel"),
}
"""Text tower ``model_type`` -> transformers (config class, model class) of the whole model."""
_WHISPER_ONLY = (
    "a Whisper encoder without a whisper_decoder head: transformers' Whisper classes "
    "(WhisperModel, WhisperForConditionalGeneration) need the decoder too"
)


@dataclass
class HFExportReport:
    """What :func:`export_hf` wrote.

    Attributes:
        out_dir: the export root.
        exported: component (``encoders.image``, ``heads.lm``) -> its HF directory.
        not_exported: component -> why it has no HF form.
    """

    out_dir: Path
    exported: dict[str, Path] = field(default_factory=dict)
    not_exported: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per component, for the command's output."""
        done = [f"exported {c} -> {p}" for c, p in self.exported.items()]
        return done + [f"not exported {c}: {why}" for c, why in self.not_exported.items()]


@dataclass(frozen=True)
class HFComponent:
    """One part of the model with an HF form.

    Attributes:
        name: ``encoders.<modality>`` or ``heads.<name>`` (Whisper: ``encoders.audio +
            heads.<name>``).
        folder: its directory under the export root.
        write: writes the HF directory into the given folder.
    """

    name: str
    folder: str
    write: Callable[[Path], None]


def export_hf(
    run_dir: str | Path, out_dir: str | Path | None = None, log: Callable[[str], None] = print
) -> HFExportReport:
    """Write every HF-origin component of ``run_dir`` to ``out_dir`` (default: ``RUN_DIR/hf``).

    Raises:
        InferenceError: the run has no component that came from an HF directory.
    """
    files = locate(run_dir)
    model = load(files.model_dir).model
    # LoRA layers carry ``.base_layer`` names transformers does not know: fold them in first.
    merge_adapters(model)
    out = Path(out_dir) if out_dir is not None else files.root / "hf"
    report = HFExportReport(out)
    components, report.not_exported = plan(model, files.model_dir)
    if not components:
        raise InferenceError(
            f"{run_dir} has no component from a Hugging Face directory to export as HF "
            f"(not exportable: {report.not_exported}); use --format onnx"
        )
    for component in components:
        target = out / component.folder
        if target.exists():
            shutil.rmtree(target)  # no stale shard or tokenizer file of an older export
        component.write(target)
        report.exported[component.name] = target
    _write_report(report)
    for line in report.lines():
        log(line)
    return report


def plan(model: MultimodalModel, model_dir: Path) -> tuple[list[HFComponent], dict[str, str]]:
    """The components of ``model`` with an HF form, and the others with the reason."""
    components: list[HFComponent] = []
    skipped: dict[str, str] = {}
    whisper_heads = [n for n, h in sorted(model.heads.items()) if isinstance(h, WhisperDecoder)]
    for modality in model.modalities:
        name = f"encoders.{modality}"
        tower = hf_tower(model.encoder(modality))
        if isinstance(model.encoder(modality), WhisperHFEncoder):
            if not whisper_heads:
                skipped[name] = _WHISPER_ONLY
            continue  # written with its decoder head below
        if tower is None:
            skipped[name] = f"{type(model.encoder(modality)).__name__} is omnifuse's own tower"
            continue
        assets = [model_dir / modality]
        components.append(HFComponent(name, f"encoders/{modality}", _writer(tower, assets)))
    skipped["fusion"] = f"{type(model.fusion).__name__} is omnifuse's own module"
    for head_name, head in sorted(model.heads.items()):
        components_or_reason = _head_component(model, model_dir, head_name, head)
        if isinstance(components_or_reason, str):
            skipped[f"heads.{head_name}"] = components_or_reason
        else:
            components.append(components_or_reason)
            if isinstance(head, CausalLMHead):
                skipped[f"heads.{head_name}.projector"] = "omnifuse's projector into the LM"
    return components, skipped


def hf_tower(encoder: nn.Module) -> Any | None:
    """The transformers model inside an ``hf`` encoder (the frame tower of a frame-wise video
    encoder); None for omnifuse's own towers."""
    if isinstance(encoder, FramewiseVideoEncoder):
        return hf_tower(encoder.frames)
    if isinstance(encoder, HFTower | TextHFEncoder):
        return encoder.model
    return None


def _head_component(
    model: MultimodalModel, model_dir: Path, name: str, head: nn.Module
) -> HFComponent | str:
    # The head's own HF directory: the run's copy (heads/<name>/), or for runs saved before
    # heads were copied, the directory it was built from.
    assets = (
        [head.source] if isinstance(head, CausalLMHead | WhisperDecoder) and head.source else []
    )
    if isinstance(head, CausalLMHead):
        return HFComponent(f"heads.{name}", f"heads/{name}", _lm_writer(head, assets))
    if isinstance(head, WhisperDecoder):
        encoder = dict(model.encoders).get("audio")
        if not isinstance(encoder, WhisperHFEncoder):
            return "a Whisper decoder whose audio encoder is not a Whisper hf tower"
        component = f"encoders.audio + heads.{name}"
        write = _whisper_writer(encoder, head, [*assets, model_dir / "audio"])
        return HFComponent(component, f"heads/{name}", write)
    return f"{type(head).__name__} is omnifuse's own head"


def _writer(module: Any, assets: list[Path]) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        save_hf_directory(module, assets, target)

    return write


def _lm_writer(head: CausalLMHead, assets: list[Path]) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        save_hf_directory(head.lm, assets, target)
        head.tokenizer.save_pretrained(str(target))  # the tokenizer the run used (pad included)

    return write


def _whisper_writer(
    encoder: WhisperHFEncoder, head: WhisperDecoder, assets: list[Path]
) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        save_hf_directory(whisper_model(encoder, head), assets, target)

    return write


def whisper_model(encoder: WhisperHFEncoder, head: WhisperDecoder) -> Any:
    """One ``WhisperForConditionalGeneration`` holding the fine-tuned encoder and decoder.

    Raises:
        InferenceError: the two do not fit one Whisper (different checkpoints' shapes).
    """
    from transformers import WhisperForConditionalGeneration

    full = WhisperForConditionalGeneration(cast(Any, head.config))
    try:
        full.model.encoder.load_state_dict(encoder.model.state_dict(), strict=True)
        full.model.decoder.load_state_dict(head.decoder.state_dict(), strict=True)
    except RuntimeError as err:
        raise InferenceError(
            f"the audio encoder and the whisper_decoder head are not one Whisper: {err}"
        ) from None
    full.tie_weights()  # proj_out shares decoder.embed_tokens, as in every Whisper checkpoint
    return full


def save_hf_directory(module: Any, assets: list[Path], target: Path) -> None:
    """``module.save_pretrained(target)`` (safetensors) + the asset folders' non-weight files
    that it did not write (tokenizer, processor and generation files; never config.json).

    A generation config among the assets replaces the one transformers derives from the model
    config (Whisper's prompt and suppressed tokens live there only).
    """
    from transformers import GenerationConfig

    for folder in assets:
        if (folder / "generation_config.json").is_file() and hasattr(module, "generation_config"):
            module.generation_config = GenerationConfig.from_pretrained(str(folder))
    cast(Any, module).save_pretrained(str(target), safe_serialization=True)
    for file in _asset_files(assets):
        if not (target / file.name).exists():
            shutil.copyfile(file, target / file.name)


def _asset_files(folders: list[Path]) -> Iterator[Path]:
    for folder in folders:
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            weights = file.name.endswith(WEIGHT_SUFFIXES) or file.name.endswith(".index.json")
            if file.is_file() and not weights and file.name != "config.json":
                yield file


def _write_report(report: HFExportReport) -> None:
    data = {
        "exported": {c: str(p.relative_to(report.out_dir)) for c, p in report.exported.items()},
        "not_exported": report.not_exported,
    }
    (report.out_dir / REPORT_FILE).write_text(json.dumps(data, indent=2) + "\n")


def export_hf_dual_encoder(
    model: HFDualEncoder, processors: Mapping[str, Processor[Any]], out_dir: str | Path
) -> Path:
    """Write ``model`` (e.g. after fine-tuning) as one CLIP / SigLIP HF directory: ``config.json``
    + ``model.safetensors`` of ``CLIPModel`` / ``SiglipModel``, the tokenizer and the image
    processor (``processors`` of :func:`~omnifuse.models.hf_dual_encoder.load_hf_dual_encoder`).

    Raises:
        InferenceError: the towers are not a CLIP or SigLIP pair.
    """
    full = _dual_encoder_model(model)
    out = Path(out_dir)
    full.save_pretrained(str(out), safe_serialization=True)
    processors["text"].save(out)  # tokenizer files
    processors["image"].save(out)  # preprocessor_config.json
    return out


def _dual_encoder_model(model: HFDualEncoder) -> Any:
    import transformers

    text, vision = model.text.hf_model, model.image.hf_model
    kind = str(text.config.model_type)
    if kind not in DUAL_ENCODER_CLASSES:
        raise InferenceError(
            f"a dual encoder with a {kind!r} text tower has no HF form; "
            f"supported: {', '.join(sorted(DUAL_ENCODER_CLASSES))}"
        )
    config_name, model_name = DUAL_ENCODER_CLASSES[kind]
    extra: dict[str, Any] = {}
    # The whole model holds the two tower classes as ``text_model`` / ``vision_model``.
    state = {f"text_model.{k}": v for k, v in text.state_dict().items()}
    state |= {f"vision_model.{k}": v for k, v in vision.state_dict().items()}
    if isinstance(model.text_projection, nn.Linear):  # CLIP; SigLIP projects inside its heads
        extra["projection_dim"] = model.text_projection.out_features
        state["text_projection.weight"] = model.text_projection.weight
        state["visual_projection.weight"] = cast(nn.Linear, model.image_projection).weight
    config = getattr(transformers, config_name)(
        text_config=text.config.to_dict(), vision_config=vision.config.to_dict(), **extra
    )
    full = getattr(transformers, model_name)(config)
    state["logit_scale"] = model.logit_scale.detach().reshape(full.logit_scale.shape)
    if model.logit_bias is not None:
        state["logit_bias"] = model.logit_bias.detach().reshape(full.logit_bias.shape)
    full.load_state_dict(state, strict=True)
    return full.eval()
