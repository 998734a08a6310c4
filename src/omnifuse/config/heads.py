"""Prediction head configs. A head reads the fused output or one modality's encoder output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from omnifuse.config.base import FUSED, StrictModel, TransformerDims
from omnifuse.config.video_generator import VideoGeneratorConfig


class ClassificationHeadConfig(StrictModel):
    """MLP (or linear) classifier over a pooled vector."""

    type: Literal["classification"] = "classification"
    num_classes: int = Field(gt=1)
    source: str = Field(default=FUSED, description="'fused' or a modality name.")
    hidden_dim: int | None = Field(default=None, gt=0, description="None = a single linear layer.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    pooling: Literal["pooled", "mean", "attention"] = Field(
        default="pooled",
        description="pooled: the source's pooled vector (a ViT's [CLS], the fused [CLS]); mean: "
        "the masked mean of the source's tokens, which leaves [CLS] to other heads (e.g. a "
        "contrastive projection reading the same tower); attention: one learned query "
        "attending over the source's tokens (also leaves [CLS] alone; weighs the tokens that "
        "matter, e.g. the largest object's patches).",
    )


class TokenClassificationHeadConfig(StrictModel):
    """Linear (or MLP) classifier applied to every token: ``[B, N, D] -> [B, N, num_classes]``
    (dense labels such as what lies under each image patch, ``scene_grounding``)."""

    type: Literal["token_classification"] = "token_classification"
    num_classes: int = Field(gt=1, description="Logits per token (all attributes together).")
    source: str = Field(
        default="image",
        description="A modality name (its encoder's tokens) or 'fused' (the fused tokens of "
        "the task's modality; the fusion must keep its token positions).",
    )
    hidden_dim: int | None = Field(default=None, gt=0, description="None = a single linear layer.")


class ProjectionHeadConfig(StrictModel):
    """Linear projection to a shared embedding space (contrastive retrieval), L2-normalised."""

    type: Literal["projection"] = "projection"
    dim: int = Field(default=64, gt=0)
    source: str = Field(default=FUSED, description="'fused' or a modality name.")


class MLMHeadConfig(StrictModel):
    """Masked-LM head (BERT): dense + GELU + LayerNorm + linear to the text vocabulary.

    The vocabulary size comes from the text encoder's tokenizer at build time.
    """

    type: Literal["mlm"] = "mlm"
    source: str = Field(
        default="text",
        description="'text' (text encoder tokens) or 'fused' (the text segment of a concat "
        "fusion's tokens).",
    )
    norm_eps: float = Field(default=1e-5, gt=0.0)


class ReconstructionHeadConfig(StrictModel):
    """Linear map from encoder tokens to the pixels of a patch or the log-mel frames of a token.

    The output width comes from the source encoder: ``patch_size**2 * channels`` for a ViT,
    ``4 * n_mels`` (four frames per token) for the audio Transformer.
    """

    type: Literal["reconstruction"] = "reconstruction"
    source: str = Field(default="image", description="'image' or 'audio'.")


class CaptionDecoderConfig(TransformerDims):
    """Causal Transformer decoder cross-attending to the fused tokens (captioning, ASR).

    Uses the text encoder's tokenizer (vocabulary size, BOS/EOS/PAD ids) at build time.
    """

    type: Literal["caption_decoder"] = "caption_decoder"
    source: str = Field(default=FUSED, description="'fused' or a modality name.")
    max_length: int = Field(
        default=32, gt=1, description="Longest target in tokens (EOS included); position table."
    )
    tie_embeddings: bool = Field(
        default=True, description="Share the token embedding with the output projection."
    )
    norm_eps: float = Field(default=1e-5, gt=0.0)


class CausalLMHeadConfig(StrictModel):
    """A local Hugging Face causal LM as the decoder (LLaVA-style).

    The features the head reads are projected into the LM's embedding width and prepended to
    its token embeddings; the LM's tokenizer (and chat template) comes from the same directory.
    """

    type: Literal["causal_lm"] = "causal_lm"
    path: Path = Field(
        description="Local transformers directory of an AutoModelForCausalLM and its tokenizer "
        "(nothing is downloaded; trust_remote_code is never set)."
    )
    source: str = Field(default=FUSED, description="'fused' or a modality name.")
    projector: Literal["linear", "mlp"] = Field(
        default="mlp",
        description="linear: one Linear to the LM width; mlp: Linear-GELU-Linear (LLaVA-1.5).",
    )
    pooling: Literal["tokens", "pooled"] = Field(
        default="tokens",
        description="tokens: every valid token of the source becomes an LM input position; "
        "pooled: its pooled vector becomes one position.",
    )
    max_new_tokens: int = Field(default=32, gt=0, description="Generation length cap.")
    max_length: int = Field(
        default=256, gt=1, description="Longest conversation in LM tokens (longer ones are cut)."
    )
    freeze_lm: bool = Field(
        default=False,
        description="Train only the projector (LLaVA stage 1); the LM's weights stay fixed.",
    )


class WhisperDecoderConfig(StrictModel):
    """A pretrained Whisper text decoder (+ its tokenizer and generation settings) loaded from
    a local Hugging Face Whisper directory, cross-attending to the audio encoder's tokens.

    The directory is what ``omnifuse convert whisper-ct2`` writes (``config.json``, weights,
    ``tokenizer.json``, ``generation_config.json``); usually the same one the audio ``hf``
    encoder loads.
    """

    type: Literal["whisper_decoder"] = "whisper_decoder"
    path: Path = Field(description="Local HF Whisper directory (decoder weights + tokenizer).")
    source: str = Field(
        default="audio", description="The Whisper audio encoder it reads (not the fusion)."
    )
    max_length: int = Field(
        default=64,
        gt=1,
        description="Most tokens to generate / longest target (EOS included); capped by the "
        "checkpoint's position table minus the prompt.",
    )


HeadConfig = Annotated[
    ClassificationHeadConfig
    | TokenClassificationHeadConfig
    | ProjectionHeadConfig
    | MLMHeadConfig
    | ReconstructionHeadConfig
    | CaptionDecoderConfig
    | WhisperDecoderConfig
    | VideoGeneratorConfig
    | CausalLMHeadConfig,
    Field(discriminator="type"),
]
