"""The model section: encoders keyed by modality, one fusion, named heads."""

from __future__ import annotations

from pydantic import Field, model_validator

from omnifuse.config.adapters import LoraAdapterConfig, check_adapter_keys
from omnifuse.config.audio import AudioEncoderConfig
from omnifuse.config.base import FUSED, MODALITIES, StrictModel
from omnifuse.config.fusion import ConcatFusionConfig, FusionConfig
from omnifuse.config.heads import HeadConfig
from omnifuse.config.image import ImageEncoderConfig
from omnifuse.config.text import TextEncoderConfig
from omnifuse.config.video import VideoEncoderConfig


class EncodersConfig(StrictModel):
    """One optional encoder per modality; at least one must be set."""

    text: TextEncoderConfig | None = None
    image: ImageEncoderConfig | None = None
    audio: AudioEncoderConfig | None = None
    video: VideoEncoderConfig | None = None

    def configured(self) -> list[str]:
        """Sorted names of the modalities that have an encoder."""
        return [m for m in MODALITIES if getattr(self, m) is not None]


class ModelConfig(StrictModel):
    """Encoders -> fusion -> heads."""

    encoders: EncodersConfig = Field(default_factory=EncodersConfig)
    fusion: FusionConfig = Field(default_factory=ConcatFusionConfig)
    heads: dict[str, HeadConfig] = Field(default_factory=dict)
    adapters: dict[str, LoraAdapterConfig] = Field(
        default_factory=dict,
        description="LoRA adapters keyed by the module path they adapt (encoders.image, "
        "heads.lm.lm, fusion ...); that module's other weights are frozen. See "
        "docs/pretrained.md.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        present = self.encoders.configured()
        if not present:
            raise ValueError(
                f"model.encoders is empty: configure at least one of {', '.join(MODALITIES)}"
            )
        for name, head in self.heads.items():
            if head.source != FUSED and head.source not in present:
                raise ValueError(
                    f"heads.{name}.source={head.source!r} is not a configured encoder; "
                    f"valid choices: 'fused', {', '.join(repr(m) for m in present)}"
                )
        problems = check_adapter_keys(list(self.adapters), present, list(self.heads))
        if problems:
            raise ValueError("; ".join(problems))
        return self
