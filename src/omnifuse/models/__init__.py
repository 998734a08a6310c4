"""Model assembly (config -> parts -> model), presets and persistence."""

from omnifuse.models.builder import Processors, build_model, create_model
from omnifuse.models.multimodal import ModelOutput, MultimodalModel
from omnifuse.models.persistence import Pretrained, load, save

__all__ = [
    "ModelOutput",
    "MultimodalModel",
    "Pretrained",
    "Processors",
    "build_model",
    "create_model",
    "load",
    "save",
]
