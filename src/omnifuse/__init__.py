"""omnifuse: multimodal models from parts.

Text, image, audio and video encoders, three fusion families, task heads; one validated config.

Example:
    >>> import omnifuse
    >>> model, processors = omnifuse.create_model("tiny")
    >>> batch = {"text": processors["text"](["a red circle"])}
    >>> out = model(batch)
"""

from omnifuse.config import ConfigError, ModelConfig, RunConfig, list_presets, load_config
from omnifuse.fusion.base import FusedOutput
from omnifuse.modalities.base import Encoder, EncoderOutput, MediaError, Processor
from omnifuse.models import (
    ModelOutput,
    MultimodalModel,
    Pretrained,
    build_model,
    create_model,
    load,
    save,
)

__version__ = "0.1.0"


def list_models() -> list[str]:
    """Names of the model presets shipped with omnifuse (usable with :func:`create_model`)."""
    return list_presets()


__all__ = [
    "ConfigError",
    "Encoder",
    "EncoderOutput",
    "FusedOutput",
    "MediaError",
    "ModelConfig",
    "ModelOutput",
    "MultimodalModel",
    "Pretrained",
    "Processor",
    "RunConfig",
    "__version__",
    "build_model",
    "create_model",
    "list_models",
    "load",
    "load_config",
    "save",
]
