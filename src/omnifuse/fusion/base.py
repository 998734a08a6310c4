"""The fusion contract: ``dict[str, EncoderOutput]`` keyed by modality -> :class:`FusedOutput`.

Defined in :mod:`omnifuse.types` (below the registry that stores fusion builders) and
re-exported here, where fusion code imports it from.
"""

from omnifuse.types import FusedOutput, Fusion

__all__ = ["FusedOutput", "Fusion"]
