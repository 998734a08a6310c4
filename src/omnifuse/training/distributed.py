"""FSDP2 sharding of a :class:`MultimodalModel` (``torch.distributed.fsdp.fully_shard``).

Lightning's ``strategy=fsdp`` (FSDP1) is what ``omnifuse train`` uses on GPU clusters; this is the
building block for FSDP2 (e.g. Lightning's ``ModelParallelStrategy`` in ``configure_model``), and
it also runs on a CPU device mesh (gloo), which the tests use.

Every module that tasks call directly is its own FSDP unit: tasks call ``model.encode`` (which
calls each encoder), ``model.fusion`` and ``model.heads[name]`` rather than ``model(...)``, so the
root module's hooks alone would never gather their parameters. Transformer blocks are units too,
so only one block's full parameters are alive at a time.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from omnifuse.layers.transformer import TransformerBlock
from omnifuse.models.multimodal import MultimodalModel


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
