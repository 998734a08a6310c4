"""A pretrained Hugging Face dual encoder (CLIP or SigLIP: text + vision towers, projections and
logit scale/bias) from one local directory, as a ready retrieval / zero-shot model.

Both towers are omnifuse encoders (the vision one is the image ``hf`` type, so its processor is
the image processor built from ``preprocessor_config.json``; the text one reads the directory's
tokenizer)::

    model, processors = load_hf_dual_encoder("clip-dir")
    out = model(processors["text"](["a dog", "a cat"]), processors["image"](["dog.jpg"]))
    out.logits_per_image.softmax(-1)  # zero-shot class probabilities, [images, texts]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnifuse.convert.hf_bert import read_safetensors
from omnifuse.modalities.base import EncoderOutput, Processor
from omnifuse.modalities.hf import HFTower, load_hf_model, model_class_name
from omnifuse.modalities.image.adapters import (
    HFImageProcessor,
    ImageHFEncoder,
    processor_config_from_hf,
)
from omnifuse.modalities.text.adapters import HFTextProcessor
from omnifuse.modalities.text.tokenizer import load_pretrained_tokenizer


@dataclass(frozen=True)
class DualEncoderFamily:
    """How one ``model_type`` splits into towers (presets as data).

    Attributes:
        text_class: transformers class of the text tower.
        vision_class: transformers class of the vision tower.
        projections: the checkpoint has ``text_projection``/``visual_projection`` (CLIP);
            SigLIP's projections are inside the towers' heads.
        bias: the checkpoint has a ``logit_bias`` (SigLIP's sigmoid loss).
        pad_to_max: texts are padded to the full position table and the tower sees no
            attention mask, because it pools the last position (SigLIP was trained on
            ``padding="max_length"`` texts, attending over the padding).
    """

    text_class: str
    vision_class: str
    projections: bool
    bias: bool
    pad_to_max: bool


DUAL_ENCODERS: dict[str, DualEncoderFamily] = {
    "clip": DualEncoderFamily("CLIPTextModel", "CLIPVisionModel", True, False, False),
    "siglip": DualEncoderFamily("SiglipTextModel", "SiglipVisionModel", False, True, True),
}


class HFTextTower(HFTower):
    """A CLIP/SigLIP text tower; ``pooled`` is the model's own (CLIP: EOS state after the
    final norm; SigLIP: the head over the last position).

    Args:
        model: the transformers text model.
        use_mask: pass the attention mask (CLIP); SigLIP attends over its padding as trained.
        freeze: keep the tower fixed.
    """

    modality: ClassVar[str] = "text"

    def __init__(self, model: nn.Module, use_mask: bool = True, freeze: bool = False) -> None:
        super().__init__(model, int(cast(Any, model).config.hidden_size), freeze)
        self.use_mask = use_mask

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        """``input_ids`` ``[B, L]`` + ``attention_mask`` ``[B, L]`` -> tokens ``[B, L, D]``."""
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        out = self.model(input_ids=ids, attention_mask=mask.long() if self.use_mask else None)
        return EncoderOutput(tokens=out.last_hidden_state, mask=mask, pooled=out.pooler_output)


class FixedLengthTextProcessor(HFTextProcessor):
    """Pads every batch to ``max_length`` (for towers that pool the last position)."""

    def collate(self, samples: Sequence[list[int]]) -> dict[str, Tensor]:
        batch = super().collate(samples)
        extra = self.max_length - batch["input_ids"].shape[1]
        if extra > 0:
            batch["input_ids"] = F.pad(batch["input_ids"], (0, extra), value=self.tokenizer.pad_id)
            batch["attention_mask"] = F.pad(batch["attention_mask"], (0, extra), value=False)
        return batch


@dataclass(frozen=True)
class DualEncoderOutput:
    """Similarities of every text with every image.

    Attributes:
        logits_per_image: ``[N_images, N_texts]`` scaled (and, for SigLIP, biased) cosines.
        logits_per_text: ``[N_texts, N_images]``, the transpose.
        image_embeds: ``[N_images, E]`` L2-normalised.
        text_embeds: ``[N_texts, E]`` L2-normalised.
    """

    logits_per_image: Tensor
    logits_per_text: Tensor
    image_embeds: Tensor
    text_embeds: Tensor


class HFDualEncoder(nn.Module):
    """Two towers, their projections into one space, a learned temperature (and bias).

    Args:
        text: the text encoder; image: the image encoder.
        text_projection, image_projection: ``[D_tower] -> [E]`` maps (identity for SigLIP).
        logit_scale: log temperature (scalar); logit_bias: SigLIP's bias, or None.
    """

    def __init__(
        self,
        text: HFTower,
        image: HFTower,
        text_projection: nn.Module,
        image_projection: nn.Module,
        logit_scale: Tensor,
        logit_bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.text = text
        self.image = image
        self.text_projection = text_projection
        self.image_projection = image_projection
        self.logit_scale = nn.Parameter(logit_scale.detach().clone().reshape(()))
        self.logit_bias = (
            None if logit_bias is None else nn.Parameter(logit_bias.detach().clone().reshape(()))
        )

    def encode_text(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Text batch -> ``[N, E]`` L2-normalised embeddings."""
        return F.normalize(self.text_projection(self.text(batch).pooled), dim=-1)

    def encode_image(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Image batch -> ``[N, E]`` L2-normalised embeddings."""
        return F.normalize(self.image_projection(self.image(batch).pooled), dim=-1)

    def forward(self, text: Mapping[str, Tensor], image: Mapping[str, Tensor]) -> DualEncoderOutput:
        """Every text against every image."""
        text_embeds, image_embeds = self.encode_text(text), self.encode_image(image)
        logits = text_embeds @ image_embeds.T * self.logit_scale.exp()  # [N_texts, N_images]
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        return DualEncoderOutput(logits.T, logits, image_embeds, text_embeds)


def _projection(state: Mapping[str, Tensor], key: str, path: Path) -> nn.Linear:
    if key not in state:
        raise ValueError(f"HF dual encoder at {path} has no {key} weight")
    weight = state[key].float()  # [E, D]
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _text_processor(path: Path, family: DualEncoderFamily, text: HFTower) -> HFTextProcessor:
    positions = int(text.hf_model.config.max_position_embeddings)
    cls = FixedLengthTextProcessor if family.pad_to_max else HFTextProcessor
    return cls(load_pretrained_tokenizer(path), positions)


def load_hf_dual_encoder(
    path: str | Path, freeze: bool = False
) -> tuple[HFDualEncoder, dict[str, Processor[Any]]]:
    """The CLIP or SigLIP at the local directory ``path`` and its text and image processors.

    Raises:
        FileNotFoundError: no ``config.json``, weights, tokenizer or preprocessor file.
        ValueError: another ``model_type``, or weights missing.
    """
    path = Path(path)
    family = DUAL_ENCODERS[model_class_name(path, {k: k for k in DUAL_ENCODERS}, "dual-encoder")]
    text_model = load_hf_model(path, True, family.text_class)
    text = HFTextTower(text_model, use_mask=not family.pad_to_max, freeze=freeze)
    image = ImageHFEncoder(load_hf_model(path, True, family.vision_class), "model", freeze)
    state = read_safetensors(path)
    if "logit_scale" not in state:
        raise ValueError(f"HF dual encoder at {path} has no logit_scale")
    bias = state.get("logit_bias") if family.bias else None
    if family.projections:
        text_proj: nn.Module = _projection(state, "text_projection.weight", path)
        image_proj: nn.Module = _projection(state, "visual_projection.weight", path)
    else:
        text_proj, image_proj = nn.Identity(), nn.Identity()
    model = HFDualEncoder(text, image, text_proj, image_proj, state["logit_scale"].float(), bias)
    processors: dict[str, Processor[Any]] = {
        "text": _text_processor(path, family, text),
        "image": HFImageProcessor(processor_config_from_hf(path), path),
    }
    return model.eval(), processors
