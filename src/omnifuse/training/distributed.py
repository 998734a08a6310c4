"""FSDP2 sharding of a :class:`MultimodalModel` (``torch.distributed.fsdp.fully_shard``).

Lightning's ``strategy=fsdp`` (FSDP1) is what ``omnifuse train`` uses on GPU clusters; this is the
building block for FSDP2 (e.g. Lightning's ``ModelParallelStrategy`` in ``configure_model``), and
it also runs on a CPU device mesh (gloo), which the tests use.

Every module that tasks call directly is its own FSDP unit: tasks call ``model.encode`` (which
calls each encoder), ``model.fusion`` and ``model.heads[name]`` rather than ``model(...)``, so the
root module's hooks alone would never gather their parameters. Transformer blocks are units too,
so only one block's full parameters are alive at a time.

:class:`AbsentModalities` keeps a batch in which one rank lacks a modality from hanging DDP or
FSDP: every rank encodes the modalities any rank has (see its docstring and docs/training.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from omnifuse.distributed import Group, is_distributed
from omnifuse.layers.transformer import TransformerBlock
from omnifuse.modalities.base import Processor
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.types import Inputs


def shard_fsdp2(model: MultimodalModel, mesh: Any | None = None) -> MultimodalModel:
    """Apply ``fully_shard`` to blocks, encoders, fusion, heads and the root, in place.

    Args:
        model: The model (on its target device).
        mesh: A 1-d ``DeviceMesh`` (default: all ranks of the default process group).

    Returns:
        ``model``, now holding sharded ``DTensor`` parameters.
    """
    from torch.distributed.fsdp import fully_shard

    units: list[nn.Module] = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    units += [model.encoder(m) for m in model.modalities]
    units += [model.fusion, *model.heads.values()]
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


# --- missing modalities: the same towers on every rank ------------------------------------------

BLANK_SAMPLES: dict[str, Any] = {
    "image": np.zeros((8, 8, 3), dtype=np.uint8),
    "text": "a",
    "audio": (np.zeros(1600, dtype=np.float32), 16_000),
    "video": np.zeros((1, 8, 8, 3), dtype=np.uint8),
}
"""Per modality, a raw input every processor of it accepts; only its tensors' *shapes* are used
(:class:`AbsentModalities` zeroes the rows)."""


class AbsentModalities:
    """Gives every rank the same modalities, so that no rank skips a tower's collectives.

    A modality no sample of a rank's batch has is left out of that batch (``collate_inputs``),
    so its encoder would not run there. Under FSDP its all-gather in forward and its
    reduce-scatter in backward are then missing on that rank, and the other ranks wait in them
    (gloo aborts on the mismatch, NCCL hangs); DDP copes only with ``find_unused_parameters``.

    Chosen fix: the ranks agree (one tiny ``all_reduce(MAX)`` of presence flags per batch) which
    modalities some rank has, and a rank lacking one adds it with every row absent
    (``present`` all False, zero tensors, the same layout ``collate_inputs`` gives a sample that
    lacks a modality). Its encoder then runs on those rows; ``MultimodalModel.encode`` masks them
    out, so they change no output and their parameters' gradients are exactly zero, yet every
    parameter takes part in every step's collectives. A modality absent on *all* ranks stays
    absent (no tower runs for nothing). Cost: on that rank, one encoder pass over a blank batch.

    Args:
        processors: the model's processors by modality (they give each blank batch's layout).
    """

    def __init__(self, processors: Mapping[str, Processor[Any]]) -> None:
        self.processors = dict(processors)
        self._templates: dict[str, dict[str, Tensor]] = {}

    def __call__(self, inputs: Inputs, group: Group | None = None) -> dict[str, dict[str, Tensor]]:
        """``inputs`` plus the modalities another rank of ``group`` has (a no-op unless
        distributed). Every rank must call this for the same batches in the same order."""
        filled = dict(inputs)
        if not is_distributed(group) or not inputs:
            return filled
        modalities = sorted(self.processors)
        first = next(iter(next(iter(inputs.values())).values()))  # any tensor: device, batch
        flags = torch.tensor([m in inputs for m in modalities], device=first.device).int()
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
        for modality, somewhere in zip(modalities, flags.tolist(), strict=True):
            if somewhere and modality not in filled:
                filled[modality] = self.absent(modality, first.shape[0], first.device)
        return filled

    def absent(self, modality: str, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        """``batch_size`` rows of ``modality`` that are all absent: zeros + ``present`` False."""
        template = self._template(modality)
        rows = {
            k: v.new_zeros((batch_size, *v.shape[1:]), device=device) for k, v in template.items()
        }
        rows["present"] = torch.zeros(batch_size, dtype=torch.bool, device=device)
        return rows

    def _template(self, modality: str) -> dict[str, Tensor]:
        """A one-sample batch of ``modality`` (cached; loaded without augmentation, so the
        processor's random stream is not advanced)."""
        if modality not in self._templates:
            if modality not in BLANK_SAMPLES:
                raise ValueError(
                    f"no blank input for modality {modality!r}; known: {sorted(BLANK_SAMPLES)}"
                )
            processor = self.processors[modality]
            training = processor.training
            processor.eval()
            try:
                self._templates[modality] = processor([BLANK_SAMPLES[modality]])
            finally:
                processor.train(training)
        return self._templates[modality]
