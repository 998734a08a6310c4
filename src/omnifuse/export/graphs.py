"""What gets exported: one traceable module per graph, with flat tensor inputs and outputs.

ONNX graphs take and return flat lists of named tensors, while the model takes
``{modality: {key: tensor}}`` and returns dataclasses. Each wrapper here rebuilds the nested
inputs from its flat arguments and calls the *production* prediction code (the task's own
``probabilities`` / ``logits``, the decoder's ``logits``), so what is exported is what
``Pipeline.predict`` runs.

Input names are ``"{modality}.{key}"`` (``"text.input_ids"``, ``"image.pixel_values"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.heads.video_generator import VideoGenerator
from omnifuse.heads.video_prior import VideoPrior
from omnifuse.layers.attention import KVCache, MultiHeadAttention
from omnifuse.modalities.base import EncoderOutput
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import patchify
from omnifuse.tasks import ClassificationTask, MaskedModelingTask, MatchingTask, MLMTask
from omnifuse.types import Inputs


@dataclass
class GraphSpec:
    """One graph to export.

    Attributes:
        name: file stem and manifest key, e.g. ``"shape"`` or ``"caption.decoder_step"``.
        module: ``forward(*inputs) -> tuple of outputs``, in the order of the names below.
        inputs: input names.
        outputs: output names.
        samples: two sample argument tuples of different batch sizes (and sequence lengths
            where the inputs have one); the first is traced, both are checked for parity.
        role: the graph's key within its task (``probabilities``, ``encoder`` ...), which the
            ONNX predictor looks it up by.
        dynamic_axes: input/output name -> {axis: symbolic name}.
    """

    name: str
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    samples: tuple[tuple[Tensor, ...], tuple[Tensor, ...]]
    role: str = ""
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


def flatten(inputs: Inputs) -> tuple[tuple[str, ...], tuple[Tensor, ...]]:
    """``{modality: {key: tensor}}`` -> names ``"modality.key"`` and tensors (sorted)."""
    names, tensors = [], []
    for modality in sorted(inputs):
        for key in sorted(inputs[modality]):
            names.append(f"{modality}.{key}")
            tensors.append(inputs[modality][key])
    return tuple(names), tuple(tensors)


def unflatten(names: Sequence[str], tensors: Sequence[Tensor]) -> dict[str, dict[str, Tensor]]:
    """Inverse of :func:`flatten`."""
    nested: dict[str, dict[str, Tensor]] = {}
    for name, tensor in zip(names, tensors, strict=True):
        modality, key = name.split(".", 1)
        nested.setdefault(modality, {})[key] = tensor
    return nested


class _InputsGraph(nn.Module):
    """Base of the wrappers whose inputs are processed modality dicts."""

    def __init__(self, model: MultimodalModel, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def nested(self, tensors: Sequence[Tensor]) -> dict[str, dict[str, Tensor]]:
        return unflatten(self.names, tensors)


class ProbabilitiesGraph(_InputsGraph):
    """Processed inputs -> ``probabilities [B, C]`` of a classification or matching task."""

    def __init__(
        self, model: MultimodalModel, names: Sequence[str], task: ClassificationTask | MatchingTask
    ) -> None:
        super().__init__(model, names)
        self.task = task

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.task.probabilities(self.model, self.nested(tensors))


class EmbeddingGraph(_InputsGraph):
    """One modality's processed inputs -> its projection head's ``embedding [B, E]``."""

    def __init__(self, model: MultimodalModel, names: Sequence[str], head: str) -> None:
        super().__init__(model, names)
        self.head = head

    def forward(self, *tensors: Tensor) -> Tensor:
        # As ContrastiveTask.predict: each modality encoded on its own, then projected.
        embedding: Tensor = self.model.run_head(self.head, self.nested(tensors))
        return embedding.float()


class MLMGraph(_InputsGraph):
    """Processed inputs (text with ``[MASK]`` ids) -> token ``logits [B, L, V]``."""

    def __init__(self, model: MultimodalModel, names: Sequence[str], task: MLMTask) -> None:
        super().__init__(model, names)
        self.task = task

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.task.logits(self.model, self.nested(tensors)).float()


class ImageReconstructionGraph(nn.Module):
    """``pixel_values [B, 3, H, W]`` and a ``token_mask [B, N]`` (True = hidden patch) ->
    per-sample ``reconstruction_mse [B]`` and ``masked [B]``.

    The mask is an input because it is random: the caller draws it (``Pipeline`` seeds torch's
    generator with 0), so the graph itself is deterministic.
    """

    def __init__(self, model: MultimodalModel, task: MaskedModelingTask) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, pixel_values: Tensor, token_mask: Tensor) -> tuple[Tensor, Tensor]:
        target = patchify(pixel_values, self.task.patch_size)  # (B, N, p*p*C)
        batch = {"pixel_values": pixel_values, "token_mask": token_mask}
        encoded = self.model.encode({self.task.modality: batch})[self.task.modality]
        pred: Tensor = self.model.heads[self.task.head](encoded)[:, 1:]  # [CLS] dropped
        return per_sample_mae(pred, target.to(pred.dtype), token_mask, self.task)


def per_sample_mae(
    pred: Tensor, target: Tensor, mask: Tensor, task: MaskedModelingTask
) -> tuple[Tensor, Tensor]:
    """:func:`omnifuse.objectives.functional.mae_loss` of every row at once: ``[B]`` losses and
    ``[B]`` hidden counts (the task's ``predict`` calls it row by row)."""
    if task.objective.norm_target:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_token = (pred - target).pow(2).mean(dim=-1)  # (B, N)
    count = mask.sum(dim=1)
    loss = (per_token * mask.to(per_token.dtype)).sum(dim=1) / count.clamp(min=1)
    return loss.float(), count


class ContextGraph(_InputsGraph):
    """Processed inputs -> what a caption decoder cross-attends to: ``context [B, S, C]`` and
    ``context_mask [B, S]`` (fused or one modality's tokens, as ``model.features``)."""

    def __init__(self, model: MultimodalModel, names: Sequence[str], head: str) -> None:
        super().__init__(model, names)
        self.head = head

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.features(self.head, self.model.encode(self.nested(tensors)))
        return features.tokens, features.mask


class DecoderStepGraph(nn.Module):
    """One cached step of an autoregressive decoder: a :class:`CaptionDecoder` or a video
    generator's :class:`VideoPrior` (both offer ``logits(ids, context, cache=, start=)`` over a
    cross-attending :class:`TransformerStack`).

    Inputs: ``input_ids [B, 1]`` (the last token), ``context [B, S, C]``, ``context_mask
    [B, S]``, then per layer ``past_key.i`` and ``past_value.i`` ``[B, H, P, Dh]`` (``P = 0``
    at the first step). Outputs: ``logits [B, V]`` of the next token and ``present_key.i`` /
    ``present_value.i`` ``[B, H, P + 1, Dh]``. The token's position is ``P``, read from the
    past keys' shape, so one graph serves every step.

    Cross-attention keys/values are recomputed from ``context`` each step (the PyTorch cache
    keeps them): the same numbers, and the graph's state stays only the self-attention cache.
    """

    def __init__(self, decoder: CaptionDecoder | VideoPrior) -> None:
        super().__init__()
        self.decoder = decoder
        self.num_layers = len(decoder.decoder.layers)

    def forward(
        self, input_ids: Tensor, context: Tensor, context_mask: Tensor, *past: Tensor
    ) -> tuple[Tensor, ...]:
        cache = [(KVCache(past[2 * i], past[2 * i + 1]), KVCache()) for i in range(self.num_layers)]
        start = past[0].shape[2]
        features = EncoderOutput(context, context_mask, context[:, 0])
        logits = self.decoder.logits(input_ids, features, cache=cache, start=start)[:, -1]
        present: list[Tensor] = []
        for self_attention, _ in cache:
            if self_attention.key is None or self_attention.value is None:
                raise RuntimeError("the decoder did not fill its self-attention cache")
            present += [self_attention.key, self_attention.value]
        return (logits.float(), *present)


class VideoDecodeGraph(nn.Module):
    """A video generator's flat ``codes [B, N]`` -> ``frames [B, T, 3, H, W]`` in ``[0, 1]``."""

    def __init__(self, generator: VideoGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, codes: Tensor) -> Tensor:
        return self.generator.decode(codes).float()


def kv_names(num_layers: int, prefix: str) -> tuple[str, ...]:
    """``prefix_key.0, prefix_value.0, prefix_key.1, ...``."""
    return tuple(f"{prefix}_{kind}.{i}" for i in range(num_layers) for kind in ("key", "value"))


def empty_past(decoder: CaptionDecoder | VideoPrior, batch: int, length: int = 0) -> list[Tensor]:
    """Per layer zero keys and values ``[B, H, length, Dh]`` (``length`` 0: the first step)."""
    shapes = []
    for layer in decoder.decoder.layers:
        attention = layer.attn
        if not isinstance(attention, MultiHeadAttention):
            raise TypeError(f"decoder self-attention is a {type(attention).__name__}")
        shapes.append((batch, attention.num_heads, length, attention.head_dim))
    return [torch.zeros(shape) for shape in shapes for _ in ("key", "value")]


def sample_past(
    decoder: CaptionDecoder | VideoPrior, batch: int, length: int, seed: int
) -> list[Tensor]:
    """Random past keys/values (a parity sample: any values exercise the same graph)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=generator) for p in empty_past(decoder, batch, length)]


def as_tuple(values: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """A wrapper's output as a tuple (single-output wrappers return a tensor)."""
    return values if isinstance(values, tuple) else (values,)


def context_of(module: nn.Module, sample: Sequence[Tensor]) -> EncoderOutput:
    """Run a :class:`ContextGraph` in PyTorch: its output as an :class:`EncoderOutput`."""
    tokens, mask = module(*sample)
    return EncoderOutput(tokens, mask, tokens[:, 0])
