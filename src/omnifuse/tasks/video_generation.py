"""Text-to-video in two stages on one ``video_generator`` head.

``video_tokenizer`` trains the head's VQ tokenizer to reconstruct ``batch["inputs"]["video"]``;
``video_generation`` turns the same clips into codes with the (frozen) tokenizer and trains the
prior to predict them, teacher-forced, from the text features the head reads. The clip is a
target there, never a model input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.tasks import VideoGenerationTaskConfig, VideoTokenizerTaskConfig
from omnifuse.errors import InferenceError
from omnifuse.heads.video_generator import VideoGenerator
from omnifuse.heads.video_prior import null_condition
from omnifuse.metrics.video import video_psnr
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.video.tokenizer import VideoTokenizer
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks.base import (
    Evaluated,
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    count_rows,
    register_task,
)
from omnifuse.types import IGNORE_INDEX, Batch, Inputs


def clip_inputs(video: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``pixel_values [B, T, 3, H, W]`` and a ``[B, T]`` frame mask that is False for padding
    frames and for every frame of a sample without a video (``present`` False)."""
    pixels = video["pixel_values"]
    mask = video.get("frame_mask")
    mask = torch.ones(pixels.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
    present = video.get("present")
    if present is not None:
        mask = mask & present.bool()[:, None]
    return pixels, mask.to(pixels.device)


def masked_mse(prediction: Tensor, target: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean squared error over the valid frames. ``[B, T, ...]`` x2, ``[B, T]`` -> scalar."""
    weight = frame_mask.to(prediction.dtype).view(*frame_mask.shape, *[1] * (prediction.ndim - 2))
    squared = (prediction - target).pow(2) * weight
    per_frame = prediction[0, 0].numel()
    return squared.sum() / (weight.sum() * per_frame).clamp(min=1.0)


def clip_psnr(prediction: Tensor, target: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean PSNR (dB) over clips with a valid frame; frames in ``[0, 1]``, ``[B, T, C, H, W]``.

    Each clip's MSE pools its valid frames (as :func:`omnifuse.metrics.video.video_psnr` does).
    """
    weight = frame_mask.to(prediction.dtype)[:, :, None, None, None]
    frames = weight.sum(dim=(1, 2, 3, 4))  # (B,)
    mse = ((prediction - target).pow(2) * weight).sum(dim=(1, 2, 3, 4))
    mse = mse / (frames * prediction[0, 0].numel()).clamp(min=1.0)
    psnr = -10.0 * torch.log10(mse.clamp(min=1e-10))
    valid = frames > 0
    return psnr[valid].mean() if bool(valid.any()) else psnr.new_zeros(())


def generator_head(model: MultimodalModel, head: str, task: str) -> VideoGenerator:
    """``model.heads[head]`` as a :class:`VideoGenerator`, or a ValueError naming the task."""
    module = model.heads[head]
    if not isinstance(module, VideoGenerator):
        raise ValueError(
            f"tasks.{task}.head={head!r} is a {type(module).__name__}, not a video_generator head"
        )
    return module


class VideoTask(Task):
    """What both video task types share: a ``video_generator`` head that makes clips from text
    (``generate``, served as ``generate_video``) and whose tokenizer reconstruction is scored by
    PSNR (frames in ``[0, 1]``)."""

    serves = ("generate_video",)
    predict_inputs = ("text",)
    head: str

    def generate(self, model: MultimodalModel, inputs: Inputs, options: PredictOptions) -> Tensor:
        """``[B, T, 3, H, W]`` clips in ``[0, 1]`` generated for the text of ``inputs``.

        Raises:
            InferenceError: no text, or a head breaking the generator contract.
        """
        if "text" not in inputs:
            raise InferenceError(f"task {self.name!r} generates video from text; pass text")
        encoded = model.encode({"text": inputs["text"]})
        frames = generator_head(model, self.head, self.name).generate(
            model.features(self.head, encoded), **options.generate
        )
        return check_frames(frames, count_rows({"text": inputs["text"]}), self.head)

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per prompt its generated clip: ``frames`` ``[T, 3, H, W]`` in ``[0, 1]``."""
        return [{"frames": clip} for clip in self.generate(model, inputs, options).float().cpu()]

    def evaluate_batch(
        self, model: MultimodalModel, batch: Batch, options: PredictOptions
    ) -> Evaluated:
        """Each real clip's tokenizer reconstruction (prediction) and the clip (reference)."""
        video = batch["inputs"].get("video")
        if video is None:
            return Evaluated([], [])
        tokenizer = generator_head(model, self.head, self.name).tokenizer
        pixels, frame_mask = clip_inputs(video)
        keep = frame_mask.any(dim=1)
        pixels, frame_mask = pixels[keep], frame_mask[keep]
        if pixels.shape[0] == 0:
            return Evaluated([], [])
        recon = tokenizer.to_unit(
            tokenizer.decode_codes(tokenizer.encode_video(pixels, frame_mask))
        )
        refs = tokenizer.to_unit(pixels).float().cpu()
        return Evaluated([{"frames": clip} for clip in recon.float().cpu()], list(refs))

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """``psnr`` (dB) of the tokenizer's reconstructions of the evaluation clips."""
        if not predictions:
            return Scores(note="no video clips in the evaluation data; PSNR not computed")
        frames = [p["frames"] for p in predictions]
        return Scores(len(frames), {"psnr": video_psnr(frames, list(references))[1]})


def check_frames(frames: Tensor, batch: int, head: str) -> Tensor:
    """``frames`` if it is ``[batch, T, 3, H, W]`` with values in ``[0, 1]``.

    Raises:
        InferenceError: another shape or range (a head breaking the generator contract).
    """
    shape = tuple(frames.shape)
    if frames.ndim != 5 or shape[0] != batch or shape[2] != 3:
        raise InferenceError(
            f"head {head!r} generated frames of shape {shape}; expected [{batch}, T, 3, H, W]"
        )
    low, high = float(frames.min()), float(frames.max())
    if low < 0.0 or high > 1.0:
        raise InferenceError(
            f"head {head!r} generated values in [{low:.3g}, {high:.3g}]; expected [0, 1]"
        )
    return frames


@register_task
class VideoTokenizerTask(VideoTask):
    """Train the VQ tokenizer of a ``video_generator`` head: reconstruction + commitment.

    The codebook follows the encoder by moving averages (updated in the head's training-mode
    forward), so only the encoder/decoder get gradients. Reports ``psnr`` (dB, frames in
    ``[0, 1]``) and the codebook ``perplexity`` (effective number of codes used).

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities of the batch the task uses (must include ``video``).
        head: the ``video_generator`` head.
        commitment: weight of the commitment loss.
    """

    type_name = "video_tokenizer"
    description = "Train a video_generator head's VQ tokenizer (reconstruction)."
    config_class = VideoTokenizerTaskConfig

    def __init__(
        self, name: str, weight: float, inputs: tuple[str, ...], head: str, commitment: float
    ) -> None:
        super().__init__(name, weight, inputs, required=("video",))
        self.head, self.commitment = head, commitment

    @classmethod
    def from_config(cls, name: str, config: VideoTokenizerTaskConfig, context: TaskContext) -> Self:
        generator_head(context.model, config.head, name)
        inputs = config.resolved_inputs(context.model.config)
        return cls(name, config.weight, inputs, config.head, config.commitment)

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """``loss``, ``reconstruction_loss``, ``commitment_loss``, ``psnr`` and ``perplexity``."""
        video = self.select_inputs(batch, required=("video",))["video"]
        tokenizer = generator_head(model, self.head, self.name).tokenizer
        pixels, frame_mask = clip_inputs(video)
        out = tokenizer(pixels, frame_mask)
        reconstruction = masked_mse(out.reconstruction, pixels, frame_mask)
        loss = reconstruction + self.commitment * out.commitment_loss
        with torch.no_grad():
            psnr = clip_psnr(
                tokenizer.to_unit(out.reconstruction), tokenizer.to_unit(pixels), frame_mask
            )
        return {
            "loss": loss,
            "reconstruction_loss": reconstruction.detach(),
            "commitment_loss": out.commitment_loss.detach(),
            "psnr": psnr,
            "perplexity": out.perplexity,
        }


def drop_condition(features: EncoderOutput, probability: float) -> EncoderOutput:
    """Mask out the whole condition of each sample with ``probability`` (classifier-free
    guidance training): a dropped row looks exactly like :func:`null_condition`."""
    drop = torch.rand(features.mask.shape[0], device=features.mask.device) < probability  # (B,)
    null = null_condition(features)
    return EncoderOutput(
        features.tokens,
        torch.where(drop[:, None], null.mask, features.mask),
        torch.where(drop[:, None], null.pooled, features.pooled),
    )


def target_codes(tokenizer: VideoTokenizer, video: Mapping[str, Tensor]) -> Tensor:
    """The clips' codes ``[B, N]`` (no gradient), :data:`IGNORE_INDEX` where no real frame is."""
    pixels, frame_mask = clip_inputs(video)
    with torch.no_grad():
        codes = tokenizer.encode_video(pixels, frame_mask)  # (B, T', h, w)
    valid = tokenizer.token_mask(frame_mask)
    return codes.masked_fill(~valid, IGNORE_INDEX).flatten(1)


@register_task
class VideoGenerationTask(VideoTask):
    """Train the prior of a ``video_generator`` head on codes of the frozen tokenizer.

    Next-code cross-entropy, teacher-forced, with the prior cross-attending to the features the
    head reads (text tokens, or the fusion of the text-only inputs). In training, each sample's
    text is dropped with ``condition_dropout`` so the same prior also models clips without text,
    which classifier-free guidance needs at sampling time.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (the conditions; never ``video``).
        head: the ``video_generator`` head.
        label_smoothing: in ``[0, 1)``.
        condition_dropout: share of training samples that see no text.
    """

    type_name = "video_generation"
    description = "Train a video_generator head's prior on tokenized clips given text."
    config_class = VideoGenerationTaskConfig

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        label_smoothing: float = 0.0,
        condition_dropout: float = 0.0,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.head = head
        self.label_smoothing, self.condition_dropout = label_smoothing, condition_dropout

    @classmethod
    def from_config(
        cls, name: str, config: VideoGenerationTaskConfig, context: TaskContext
    ) -> Self:
        generator_head(context.model, config.head, name)
        return cls(
            name,
            config.weight,
            config.resolved_inputs(context.model.config),
            config.head,
            config.label_smoothing,
            config.condition_dropout,
        )

    def _video(self, batch: Batch) -> Mapping[str, Tensor]:
        video = batch["inputs"].get("video")
        if video is None:
            raise ValueError(
                f"task {self.name!r} needs the target clips in batch['inputs']['video']; the "
                f"batch holds {sorted(batch['inputs'])}"
            )
        return video

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (cross-entropy), code ``accuracy`` and ``perplexity``."""
        generator = generator_head(model, self.head, self.name)
        targets = target_codes(generator.tokenizer, self._video(batch))  # (B, N)
        features = model.features(self.head, model.encode(self.select_inputs(batch)))
        if self.training and self.condition_dropout > 0:
            features = drop_condition(features, self.condition_dropout)
        logits: Tensor = generator(features, targets.clamp(min=0))  # (B, N, K)
        loss = F.cross_entropy(
            logits.transpose(1, 2),
            targets,
            ignore_index=IGNORE_INDEX,
            label_smoothing=self.label_smoothing,
        )
        valid = targets != IGNORE_INDEX
        hits = (logits.detach().argmax(dim=-1) == targets) & valid
        accuracy = hits.sum() / valid.sum().clamp(min=1)
        return {"loss": loss, "accuracy": accuracy.float(), "perplexity": loss.detach().exp()}
