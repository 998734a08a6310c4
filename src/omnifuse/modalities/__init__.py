"""One subpackage per modality: a processor (raw input -> tensors) and its encoder(s)."""

from omnifuse.modalities.base import Encoder, EncoderOutput, MediaError, Processor

__all__ = ["Encoder", "EncoderOutput", "MediaError", "Processor"]
