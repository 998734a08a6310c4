"""Per task type: which graphs its prediction needs, with sample inputs and the metadata a
torch-free predictor needs besides the graphs (class names, special ids, mask ratio ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from omnifuse.errors import InferenceError
from omnifuse.export.graphs import (
    ContextGraph,
    DecoderStepGraph,
    EmbeddingGraph,
    GraphSpec,
    ImageReconstructionGraph,
    MLMGraph,
    ProbabilitiesGraph,
    VideoDecodeGraph,
    as_tuple,
    flatten,
    kv_names,
    sample_past,
)
from omnifuse.export.samples import processed_samples
from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.heads.video_prior import VideoPrior
from omnifuse.models.builder import Processors
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives.functional import random_masking
from omnifuse.tasks import (
    CaptioningTask,
    ClassificationTask,
    ContrastiveTask,
    MaskedModelingTask,
    MatchingTask,
    MLMTask,
    Task,
    VideoTask,
)
from omnifuse.tasks.matching import MATCHING_CLASSES
from omnifuse.tasks.video_generation import generator_head
from omnifuse.types import Inputs

SEQUENCE_AXES = {
    "text.input_ids": 1,
    "text.attention_mask": 1,
    "audio.features": 1,
    "audio.mask": 1,
}
"""Inputs whose axis 1 is a sequence: the samples must differ there to prove it dynamic."""
MASK_SEED = 0
"""``Pipeline.predict`` seeds torch with 0 before a masked-modelling prediction draws its mask."""


@dataclass
class TaskExport:
    """What one task exports: its graphs and the metadata its predictor reads."""

    graphs: list[GraphSpec]
    meta: dict[str, Any] = field(default_factory=dict)


class NotExportable(InferenceError):
    """A task (type or configuration) that has no ONNX export; the message says why."""


class ExportError(InferenceError):
    """An export that cannot be written or fails its parity check (the message says which)."""


def task_export(task: Task, model: MultimodalModel, processors: Processors) -> TaskExport:
    """The graphs and metadata of ``task``.

    Raises:
        NotExportable: a task type or configuration without an export (the reason).
    """
    if isinstance(task, ClassificationTask | MatchingTask):
        return _probabilities(task, model, processors)
    if isinstance(task, ContrastiveTask):
        return _contrastive(task, model, processors)
    if isinstance(task, MLMTask):
        return _mlm(task, model, processors)
    if isinstance(task, MaskedModelingTask):
        return _masked_modeling(task, model)
    if isinstance(task, CaptioningTask):
        return _captioning(task, model, processors)
    if isinstance(task, VideoTask):
        return _video(task, model, processors)
    raise NotExportable(f"task type {task.type_name!r} has no ONNX export")


def _inputs_spec(
    name: str,
    role: str,
    module: torch.nn.Module,
    samples: tuple[Inputs, Inputs],
    outputs: tuple[str, ...],
) -> GraphSpec:
    """A graph over processed inputs, with dynamic axes read off the two sample batches."""
    names, first = flatten(samples[0])
    _, second = flatten(samples[1])
    spec = GraphSpec(name, module, names, outputs, (first, second), role)
    spec.dynamic_axes = infer_dynamic_axes(spec)
    fixed = [
        n for n, axis in SEQUENCE_AXES.items() if n in names and axis not in spec.dynamic_axes[n]
    ]
    if fixed:
        # Tracing would bake that length in and the parity check could not notice.
        raise ExportError(
            f"graph {name!r}: the two sample batches have the same length in {fixed}, so the "
            "sequence axis would not be exported as dynamic (is the tokenizer's max_length tiny?)"
        )
    return spec


def infer_dynamic_axes(spec: GraphSpec) -> dict[str, dict[int, str]]:
    """Axes whose size differs between the two samples: axis 0 is ``batch``; an input's other
    axes are ``{modality}_length`` (``text_length``), an output's ``{output}_{axis}``."""
    with torch.no_grad():
        outputs = [as_tuple(spec.module(*sample)) for sample in spec.samples]
    axes: dict[str, dict[int, str]] = {}
    for names, (a, b), inputs in (
        (spec.inputs, spec.samples, True),
        (spec.outputs, outputs, False),
    ):
        for name, x, y in zip(names, a, b, strict=True):
            dims = {
                axis: "batch" if axis == 0 else _axis_name(name, axis, inputs)
                for axis in range(x.ndim)
                if x.shape[axis] != y.shape[axis]
            }
            if dims:
                axes[name] = dims
    return axes


def _axis_name(name: str, axis: int, is_input: bool) -> str:
    if is_input and "." in name:
        return f"{name.split('.')[0]}_length"
    return f"{name}_{axis}"


def _probabilities(
    task: ClassificationTask | MatchingTask, model: MultimodalModel, processors: Processors
) -> TaskExport:
    modalities = task.inputs if isinstance(task, ClassificationTask) else (task.a, task.b)
    samples = processed_samples(processors, modalities)
    names = flatten(samples[0])[0]
    module = ProbabilitiesGraph(model, names, task)
    names_of_classes = (
        list(MATCHING_CLASSES)
        if isinstance(task, MatchingTask)
        else (None if task.class_names is None else list(task.class_names))
    )
    return TaskExport(
        [_inputs_spec(task.name, "probabilities", module, samples, ("probabilities",))],
        {"inputs": sorted(modalities), "class_names": names_of_classes},
    )


def _contrastive(
    task: ContrastiveTask, model: MultimodalModel, processors: Processors
) -> TaskExport:
    graphs = []
    for modality, head in task.heads.items():
        samples = processed_samples(processors, (modality,))
        module = EmbeddingGraph(model, flatten(samples[0])[0], head)
        graphs.append(
            _inputs_spec(f"{task.name}.{modality}", modality, module, samples, ("embedding",))
        )
    return TaskExport(graphs, {"inputs": [task.a, task.b], "a": task.a, "b": task.b})


def _mlm(task: MLMTask, model: MultimodalModel, processors: Processors) -> TaskExport:
    if task.tokenizer is None:
        raise NotExportable(f"task {task.name!r} was built without a tokenizer")
    samples = processed_samples(processors, task.inputs)
    module = MLMGraph(model, flatten(samples[0])[0], task)
    meta = {"inputs": sorted(task.inputs), "mask_id": task.tokenizer.mask_id}
    return TaskExport([_inputs_spec(task.name, "logits", module, samples, ("logits",))], meta)


def _masked_modeling(task: MaskedModelingTask, model: MultimodalModel) -> TaskExport:
    if task.modality != "image":
        raise NotExportable(
            f"task {task.name!r} reconstructs {task.modality}; only image masked modelling is "
            "exported (audio frames' validity mask is not reproduced by the ONNX predictor yet)"
        )
    image_size = _image_size(model)
    grid = image_size // task.patch_size
    samples = []
    for batch in (2, 3):
        pixels = torch.randn(batch, 3, image_size, image_size, generator=_generator(batch))
        mask = image_token_mask(batch, grid * grid, task.objective.mask_ratio, seed=batch)
        samples.append((pixels, mask))
    spec = GraphSpec(
        task.name,
        ImageReconstructionGraph(model, task),
        ("image.pixel_values", "image.token_mask"),
        ("reconstruction_mse", "masked"),
        (samples[0], samples[1]),
        "reconstruction",
    )
    spec.dynamic_axes = infer_dynamic_axes(spec)
    meta = {
        "inputs": ["image"],
        "mask_ratio": task.objective.mask_ratio,
        "num_patches": grid * grid,
        "mask_seed": MASK_SEED,
    }
    return TaskExport([spec], meta)


def image_token_mask(batch: int, patches: int, mask_ratio: float, seed: int = MASK_SEED) -> Tensor:
    """The ``[B, N]`` bool patch mask (True = hidden) that ``Pipeline.predict`` draws: torch's
    global generator seeded with ``seed``, then the task's ``random_masking`` (its state is
    restored afterwards). The one place the ONNX predictor still needs torch's generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return random_masking(torch.empty(batch, patches), mask_ratio).mask


def _image_size(model: MultimodalModel) -> int:
    image = model.config.encoders.image
    processor = getattr(image, "processor", None)
    if processor is None:
        raise NotExportable("masked modelling export needs a ViT image encoder with a processor")
    return int(processor.image_size)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _captioning(task: CaptioningTask, model: MultimodalModel, processors: Processors) -> TaskExport:
    decoder = model.heads[task.head]
    if not isinstance(decoder, CaptionDecoder):
        raise NotExportable(f"head {task.head!r} of task {task.name!r} is not a CaptionDecoder")
    samples = processed_samples(processors, task.inputs)
    encoder = ContextGraph(model, flatten(samples[0])[0], task.head)
    encoder_spec = _inputs_spec(
        f"{task.name}.encoder", "encoder", encoder, samples, ("context", "context_mask")
    )
    meta = {
        "inputs": sorted(task.inputs),
        "head": task.head,
        "bos_id": decoder.bos_id,
        "eos_id": decoder.eos_id,
        "pad_id": decoder.pad_id,
        "max_length": decoder.max_length,
        "num_layers": len(decoder.decoder.layers),
    }
    step = decoder_step_spec(f"{task.name}.decoder_step", "decoder_step", decoder, encoder_spec)
    return TaskExport([encoder_spec, step], meta)


def _video(task: VideoTask, model: MultimodalModel, processors: Processors) -> TaskExport:
    """Text condition, prior step (greedy codes in a numpy loop) and the VQ decoder."""
    generator = generator_head(model, task.head, task.name)
    inputs = task.predict_inputs or task.inputs
    samples = processed_samples(processors, inputs)
    condition = ContextGraph(model, flatten(samples[0])[0], task.head)
    condition_spec = _inputs_spec(
        f"{task.name}.condition", "condition", condition, samples, ("context", "context_mask")
    )
    prior = generator.prior
    step = decoder_step_spec(f"{task.name}.prior_step", "prior_step", prior, condition_spec)
    codes = [
        torch.randint(
            0, prior.codebook_size, (batch, prior.num_tokens), generator=_generator(batch)
        )
        for batch in (2, 3)
    ]
    decode = GraphSpec(
        f"{task.name}.decode",
        VideoDecodeGraph(generator),
        ("codes",),
        ("frames",),
        ((codes[0],), (codes[1],)),
        "decode",
    )
    decode.dynamic_axes = infer_dynamic_axes(decode)
    meta = {
        "inputs": sorted(inputs),
        "head": task.head,
        "bos_id": prior.bos_id,
        "num_tokens": prior.num_tokens,
        "guidance": generator.sampling.guidance,
    }
    return TaskExport([condition_spec, step, decode], meta)


def decoder_step_spec(
    name: str, role: str, decoder: CaptionDecoder | VideoPrior, encoder: GraphSpec
) -> GraphSpec:
    """The step graph of ``decoder``, sampled on the encoder graph's contexts with 2 and 5
    cached positions (so the past length is proven dynamic too)."""
    layers = len(decoder.decoder.layers)
    samples = []
    for index, past in enumerate((2, 5)):
        with torch.no_grad():
            context, mask = as_tuple(encoder.module(*encoder.samples[index]))
        batch = context.shape[0]
        ids = torch.randint(
            0, decoder.token_embed.num_embeddings, (batch, 1), generator=_generator(index)
        )
        samples.append((ids, context, mask, *sample_past(decoder, batch, past, index)))
    past_names, present_names = kv_names(layers, "past"), kv_names(layers, "present")
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch"},
        "context": {0: "batch", 1: "context_length"},
        "context_mask": {0: "batch", 1: "context_length"},
        "logits": {0: "batch"},
    }
    axes |= {name: {0: "batch", 2: "past_length"} for name in past_names}
    axes |= {name: {0: "batch", 2: "present_length"} for name in present_names}
    return GraphSpec(
        name,
        DecoderStepGraph(decoder),
        ("input_ids", "context", "context_mask", *past_names),
        ("logits", *present_names),
        (samples[0], samples[1]),
        role,
        axes,
    )
