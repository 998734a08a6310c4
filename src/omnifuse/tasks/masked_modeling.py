"""``masked_modeling``: SimMIM-style reconstruction of masked image patches or audio frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Self

import torch
from torch import Tensor

from omnifuse.config.audio import SUBSAMPLING
from omnifuse.config.image import ViTConfig
from omnifuse.config.tasks import MaskedModelingTaskConfig
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import MaskedReconstruction, frames_to_patches, patchify
from omnifuse.tasks.base import (
    LossScoredTask,
    Prediction,
    PredictOptions,
    TaskContext,
    register_task,
)
from omnifuse.types import Batch, Inputs


class Targets(NamedTuple):
    """What the head reconstructs: ``patches [B, N, P]``; ``valid [B, N]`` marks real ones."""

    patches: Tensor
    valid: Tensor


@register_task
class MaskedModelingTask(LossScoredTask):
    """Hide random tokens of one modality and reconstruct them from the rest.

    ``objectives.random_masking`` picks ``mask_ratio`` of each sample's valid tokens; the encoder
    gets them as ``token_mask`` and swaps them for its learned mask token before the
    Transformer (SimMIM); a ``reconstruction`` head maps every output token to values, and
    ``objectives.mae_loss`` scores the hidden tokens only.

    Token alignment: a ViT's tokens are ``[CLS]`` + one per patch, so the head output drops its
    first position and targets are ``patchify(pixel_values)``; the audio encoder keeps one token
    per 4 frames, so targets are ``frames_to_patches(features, 4)``.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (must hold ``modality``).
        modality: ``"image"`` or ``"audio"``.
        head: a ``reconstruction`` head reading ``modality``.
        objective: mask ratio and target normalisation.
        patch_size: ViT patch side in pixels (image only).
    """

    type_name = "masked_modeling"
    description = "SimMIM-style reconstruction of masked patches / frames."
    config_class = MaskedModelingTaskConfig
    serves = ("reconstruct",)

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        modality: str,
        head: str,
        objective: MaskedReconstruction,
        patch_size: int = 0,
    ) -> None:
        super().__init__(name, weight, inputs, required=(modality,))
        if modality not in ("image", "audio"):
            raise ValueError(f"modality={modality!r}; valid choices: 'image', 'audio'")
        self.modality, self.head, self.objective = modality, head, objective
        self.patch_size = patch_size

    def targets(self, inputs: dict[str, Tensor]) -> Targets:
        """Patches to reconstruct, aligned with the encoder's (non-[CLS]) tokens."""
        present = inputs.get("present")
        if self.modality == "image":
            patches = patchify(inputs["pixel_values"], self.patch_size)  # (B, N, p*p*C)
            valid = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)
        else:
            patches, valid = frames_to_patches(inputs["features"], SUBSAMPLING, inputs.get("mask"))
        if present is not None:
            valid = valid & present.bool().to(valid.device)[:, None]
        return Targets(patches, valid)

    @classmethod
    def from_config(cls, name: str, config: MaskedModelingTaskConfig, context: TaskContext) -> Self:
        """The patch size comes from the image encoder config."""
        encoder = getattr(context.model.config.encoders, config.modality)
        patch_size = encoder.patch_size if isinstance(encoder, ViTConfig) else 0
        return cls(
            name,
            config.weight,
            config.resolved_inputs(context.model.config),
            config.modality,
            config.head,
            MaskedReconstruction(config.mask_ratio, config.norm_target),
            patch_size,
        )

    def reconstruct(
        self, model: MultimodalModel, inputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, Targets, Tensor]:
        """Mask random tokens of one modality's inputs and reconstruct them.

        Returns:
            predicted patches ``[B, N, P]``, the targets, and the ``[B, N]`` bool token mask.
        """
        batch = dict(inputs)
        target = self.targets(batch)
        masking = self.objective.mask(target.patches, target.valid)
        batch["token_mask"] = masking.mask
        encoded = model.encode({self.modality: batch})[self.modality]
        pred: Tensor = model.heads[self.head](encoded)  # (B, [1 +] N, P)
        if self.modality == "image":
            pred = pred[:, 1:]  # the [CLS] token reconstructs nothing
        return pred, target, masking.mask

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (MSE over hidden tokens) and ``num_masked``."""
        pred, target, mask = self.reconstruct(
            model, self.select_inputs(batch, (self.modality,))[self.modality]
        )
        out = self.objective(pred, target.patches.to(pred.dtype), mask)
        return {"loss": out.loss, "num_masked": out.num_masked.detach().float()}

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per sample ``reconstruction_mse`` over its hidden patches/frames and their number
        (``masked``); masks are random (seed torch for repeatable results)."""
        pred, target, mask = self.reconstruct(model, inputs[self.modality])
        rows = []
        for row in range(pred.shape[0]):
            out = self.objective(
                pred[row : row + 1],
                target.patches[row : row + 1].to(pred.dtype),
                mask[row : row + 1],
            )
            rows.append({"reconstruction_mse": float(out.loss), "masked": int(out.num_masked)})
        return rows
