"""``scene_grounding``: every image patch token predicts what lies under it (dense grounding).

Why: a VQA model trained on answers alone learns to answer from the question (ShapesWorld's
question-only baseline is 0.43 of its 0.53); labelling each patch with the shape and colour
of the object on it tells the image tower (or the fusion's image tokens) where each object is
and what it is, which every question type needs. The labels come from the ``scene`` field
(:func:`omnifuse.datasets.scenes.patch_labels`), not from the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.image import ViTConfig
from omnifuse.config.tasks import GROUNDING_ATTRIBUTES, SceneGroundingTaskConfig
from omnifuse.datasets.scenes import PATCH_ATTRIBUTES, patch_labels
from omnifuse.modalities.base import EncoderOutput
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks.base import (
    LossScoredTask,
    Prediction,
    PredictOptions,
    TaskContext,
    register_task,
)
from omnifuse.types import IGNORE_INDEX, Batch, Inputs


@register_task
class SceneGroundingTask(LossScoredTask):
    """Per-patch cross-entropy of a ``token_classification`` head against scene-derived labels.

    The head's ``num_classes`` logits per token are split into one block per attribute
    (``values + 1``: class 0 is "empty"); the loss is the mean over attributes of each
    block's cross-entropy over the labelled patches. The ViT's ``[CLS]`` (first token of the
    image tokens, also in the fused image segment) has no patch and is dropped.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (must hold ``image``).
        head: a ``token_classification`` head reading ``image`` or ``fused``.
        grid: patches per side (``image_size / patch_size``).
        attributes: what each patch predicts (``shape``, ``colour``, ``size``).
        target: the string field holding the scene.
        min_cover: share of a patch an object must cover to label it.
    """

    type_name = "scene_grounding"
    description = "Per-patch shape/colour labels from the scene (dense grounding)."
    config_class = SceneGroundingTaskConfig

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        grid: int,
        attributes: Sequence[str] = ("shape", "colour"),
        target: str = "scene",
        min_cover: float = 0.25,
    ) -> None:
        super().__init__(name, weight, inputs, required=("image",))
        self.head, self.grid, self.target_field = head, grid, target
        self.attributes, self.min_cover = tuple(attributes), min_cover
        self.sizes = [GROUNDING_ATTRIBUTES[a] + 1 for a in self.attributes]

    @classmethod
    def from_config(cls, name: str, config: SceneGroundingTaskConfig, context: TaskContext) -> Self:
        """The patch grid comes from the ViT's image size and patch size."""
        image = context.model.config.encoders.image
        if not isinstance(image, ViTConfig):
            raise ValueError(f"task {name!r}: scene_grounding needs a 'vit' image encoder")
        return cls(
            name,
            config.weight,
            config.resolved_inputs(context.model.config),
            config.head,
            image.processor.image_size // image.patch_size,
            config.attributes,
            config.target,
            config.min_cover,
        )

    def labels(self, scenes: Sequence[str | None], device: torch.device) -> Tensor:
        """``[B, grid * grid, A]`` long patch labels (:data:`IGNORE_INDEX` where unknown)."""
        rows = [patch_labels(s, self.grid, self.attributes, self.min_cover) for s in scenes]
        return torch.from_numpy(np.stack(rows)).to(device)

    def patch_logits(self, model: MultimodalModel, inputs: Inputs) -> Tensor:
        """``[B, grid * grid, num_classes]`` logits of the image's patch tokens."""
        encoded = model.encode(inputs)
        features: EncoderOutput = (
            model.fusion(encoded).segment("image")
            if model.reads_fusion(self.head)
            else encoded["image"]
        )
        logits: Tensor = model.heads[self.head](features)[:, 1:]  # [CLS] covers no patch
        if logits.shape[1] != self.grid**2 or logits.shape[2] != sum(self.sizes):
            raise ValueError(
                f"task {self.name!r}: head {self.head!r} gave {tuple(logits.shape[1:])} "
                f"(patches, classes) per sample; expected ({self.grid**2}, {sum(self.sizes)})"
            )
        return logits

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """``loss`` (mean over attributes of the patch cross-entropy) and per attribute
        ``<attr>_accuracy`` (labelled patches) and ``<attr>_object_accuracy`` (patches on an
        object)."""
        logits = self.patch_logits(model, self.select_inputs(batch, ("image",)))
        labels = self.labels(self.target(batch, self.target_field), logits.device)
        out: dict[str, Tensor] = {}
        losses = []
        for column, (attribute, block) in enumerate(
            zip(self.attributes, torch.split(logits, self.sizes, dim=-1), strict=True)
        ):
            target = labels[..., column]  # [B, N]
            labelled = target != IGNORE_INDEX
            count = labelled.sum().clamp(min=1).to(block.dtype)
            # sum / count: a batch without scenes gives 0, not NaN
            ce = F.cross_entropy(
                block.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            losses.append(ce / count)
            with torch.no_grad():
                hits = block.argmax(dim=-1) == target
                on_object = labelled & (target > 0)
                out[f"{attribute}_accuracy"] = (hits & labelled).sum() / count
                objects = on_object.sum().clamp(min=1)
                out[f"{attribute}_object_accuracy"] = (hits & on_object).sum() / objects
        out["loss"] = torch.stack(losses).mean()
        return out

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per sample and attribute, the ``grid x grid`` map of what lies under each patch
        (``"empty"`` or a value, e.g. ``{"shape": [["empty", "star", ...], ...]}``)."""
        logits = self.patch_logits(model, inputs)
        maps: list[Prediction] = [{} for _ in range(logits.shape[0])]
        for attribute, block in zip(
            self.attributes, torch.split(logits, self.sizes, dim=-1), strict=True
        ):
            names = ("empty", *PATCH_ATTRIBUTES[attribute])
            best = block.argmax(dim=-1).view(-1, self.grid, self.grid).tolist()  # [B, g, g]
            for sample, rows in zip(maps, best, strict=True):
                sample[attribute] = [[names[i] for i in row] for row in rows]
        return maps
