"""The contracts every modality honours: ``Processor`` (raw input -> tensors) and ``Encoder``
(tensors -> :class:`EncoderOutput`); defined in :mod:`omnifuse.types`, below the registry that
stores encoder builders, and re-exported here, where modality code imports them from.

Mask convention: ``mask`` is boolean and ``True`` at valid (non-padding) positions.
"""

from omnifuse.types import Encoder, EncoderOutput, MediaError, Processor, Sample

__all__ = ["Encoder", "EncoderOutput", "MediaError", "Processor", "Sample"]
