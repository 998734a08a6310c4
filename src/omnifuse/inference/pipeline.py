"""The inference API: ``Pipeline.load(run_dir)`` then classify, caption, transcribe, answer, embed.

Every method is batched (lists in, lists out), runs under ``torch.no_grad`` in eval mode, and maps
the request to one of the run's tasks by type and inputs (``task=`` names one explicitly)::

    from omnifuse.inference import DecodingOptions, Pipeline

    pipe = Pipeline.load("runs/shapes")
    pipe.classify(image=["cat.png"])            # [{"label": "circle", "score": 0.9, "scores": ...}]
    pipe.caption(["cat.png"], DecodingOptions(strategy="beam", beam_size=4))

Raw inputs go through the model's own processors, so a file that cannot be read raises
:class:`~omnifuse.modalities.base.MediaError` naming its path; a request the run cannot serve
raises :class:`~omnifuse.inference.options.InferenceError` listing the valid choices.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import task_type
from omnifuse.inference import decoding
from omnifuse.inference.options import DecodingOptions, InferenceError
from omnifuse.inference.results import (
    ClassPrediction,
    FillMaskPrediction,
    ReconstructionPrediction,
    class_prediction,
    fill_row,
)
from omnifuse.inference.runs import (
    ClassNames,
    check_task,
    describe_tasks,
    find_task,
    locate,
    run_config,
    task_classes,
)
from omnifuse.inference.video import check_formats, check_frames, write_clips
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextProcessor, TextTokenizer
from omnifuse.models import MultimodalModel, Processors, load
from omnifuse.tasks.base import Task, TaskContext, head_features, task_builder
from omnifuse.tasks.mlm import text_segment

Inputs = dict[str, dict[str, Tensor]]
"""Processed inputs keyed by modality (what the model's encoders read)."""
RawInputs = Mapping[str, Sequence[Any] | None]
"""Raw inputs keyed by modality: one list entry (path, string, array) per sample."""

CLASSIFYING = ("classification", "matching")


@contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Run the body with torch's RNGs (CPU, and ``device`` if CUDA) seeded, restoring them after.

    Random masking (mlm, masked modelling) then gives the same result on every call.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def is_video_generator(head: nn.Module) -> bool:
    """A head that makes clips: it has ``generate`` but is no step-wise text decoder."""
    return callable(getattr(head, "generate", None)) and not hasattr(head, "step")


class Pipeline:
    """A loaded model with its processors and run config, ready for requests.

    Args:
        model: the model (put in eval mode and moved to ``device``).
        processors: its processors (put in eval mode: no augmentation).
        config: the run config, whose ``tasks`` map requests to heads.
        device: where to run (default: CUDA when available, else CPU).
    """

    def __init__(
        self,
        model: MultimodalModel,
        processors: Processors,
        config: RunConfig,
        device: str | torch.device | None = None,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processors = processors
        for processor in processors.values():
            processor.eval()
        self.config = config
        self._classes: dict[str, ClassNames] = {}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Pipeline:
        """Load a run directory (its ``model/`` and ``config.yaml``) or a model directory.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            InferenceError: not a run/model directory, or a run without a saved model.
            ConfigError: an invalid config file.
        """
        files = locate(path)
        pretrained = load(files.model_dir)
        config = run_config(files, pretrained.config, pretrained.model.config)
        return cls(pretrained.model, pretrained.processors, config, device)

    # ------------------------------------------------------------------ run inspection

    @property
    def tasks(self) -> dict[str, str]:
        """Task name -> task type, in config order."""
        return {name: task_type(task) for name, task in self.config.tasks.items()}

    def task_inputs(self, task: str) -> tuple[str, ...]:
        """The modalities task ``task`` feeds to the model, sorted."""
        inputs: tuple[str, ...] = check_task(self.config, task).resolved_inputs(self.model.config)
        return inputs

    def head_of(self, task: str) -> str:
        """The head task ``task`` trains (``head`` field)."""
        head = getattr(check_task(self.config, task), "head", None)
        if not isinstance(head, str):
            raise InferenceError(f"task {task!r} ({self.tasks[task]}) has no single head")
        return head

    def num_classes(self, task: str) -> int:
        """Classes of the head of a classification/matching task."""
        head = self.model.config.heads[self.head_of(task)]
        if head.type != "classification":
            raise InferenceError(f"task {task!r} has a {head.type} head, not a classifier")
        return head.num_classes

    def class_names(self, task: str) -> ClassNames:
        """Class names of a classification/matching task (from its dataset card), cached."""
        if task not in self._classes:
            self._classes[task] = task_classes(self.config, task, self.num_classes(task))
        return self._classes[task]

    def tokenizer(self) -> TextTokenizer:
        """The text tokenizer (decoded texts, masks)."""
        processor = self.processors.get("text")
        if not isinstance(processor, TextProcessor):
            raise InferenceError("this model has no text processor; configure a text encoder")
        return processor.tokenizer

    # ------------------------------------------------------------------ tensors

    def process_modality(self, modality: str, values: Sequence[Any] | None) -> dict[str, Tensor]:
        """Raw values of one modality -> the batch dict its encoder reads (on the device).

        Raises:
            InferenceError: not a list, empty, or a modality without an encoder.
            MediaError: a value that cannot be loaded (names the path).
        """
        if modality not in self.processors:
            raise InferenceError(
                f"the model has no {modality} encoder; configured: {', '.join(self.processors)}"
            )
        if isinstance(values, str | Path | bytes) or not isinstance(values, Sequence):
            raise InferenceError(
                f"{modality}: pass a list with one entry per sample, got {type(values).__name__}"
            )
        if len(values) == 0:
            raise InferenceError(f"{modality}: got an empty list; pass at least one sample")
        batch = self.processors[modality](list(values))
        return {key: value.to(self.device) for key, value in batch.items()}

    def process(self, task: str, raws: RawInputs) -> Inputs:
        """Raw inputs of a request for ``task`` -> processed inputs of every modality it reads.

        Args:
            task: the task the request is for.
            raws: modality -> list of raw values (None counts as not given).

        Raises:
            InferenceError: a missing or extra modality, or lists of different lengths.
        """
        wanted = self.task_inputs(task)
        given = {m: v for m, v in raws.items() if v is not None}
        problems = [f"missing input {m}" for m in wanted if m not in given]
        problems += [f"it does not read {m}" for m in sorted(set(given) - set(wanted))]
        if problems:
            raise InferenceError(f"task {task!r} reads {', '.join(wanted)}: {'; '.join(problems)}")
        inputs = {m: self.process_modality(m, given[m]) for m in sorted(given)}
        sizes = {m: int(next(iter(batch.values())).shape[0]) for m, batch in inputs.items()}
        if len(set(sizes.values())) > 1:
            listing = ", ".join(f"{m}: {n}" for m, n in sizes.items())
            raise InferenceError(f"inputs differ in length ({listing}); give one per sample")
        return inputs

    def features(self, head: str, inputs: Inputs) -> EncoderOutput:
        """What ``head`` reads: the fusion of ``inputs`` or its source modality's encoding."""
        return head_features(self.model, head, self.model.encode(inputs))

    def probabilities(self, task: str, inputs: Inputs) -> Tensor:
        """``[B, C]`` class probabilities of a classification/matching task."""
        head = self.head_of(task)
        logits: Tensor = self.model.heads[head](self.features(head, inputs))
        return logits.float().softmax(dim=-1)

    def decode(
        self, task: str, inputs: Inputs, options: DecodingOptions | None = None
    ) -> decoding.Decoded:
        """Generated token ids of a captioning task (see :func:`decoding.decode`)."""
        head = self.head_of(task)
        decoder = self.model.heads[head]
        if not hasattr(decoder, "step"):
            raise InferenceError(f"head {head!r} of task {task!r} is not a step-wise text decoder")
        features = self.features(head, inputs)
        stepper = cast(decoding.StepDecoder, decoder)  # duck-typed: it has step()
        return decoding.decode(stepper, features, options or DecodingOptions())

    def texts(self, tokens: Tensor) -> list[str]:
        """``[B, T]`` generated ids -> texts (cut at the first EOS, special tokens dropped)."""
        tokenizer = self.tokenizer()
        out = []
        for row in tokens.tolist():
            ids = row[: row.index(tokenizer.eos_id)] if tokenizer.eos_id in row else row
            out.append(tokenizer.decode(ids).strip())
        return out

    # ------------------------------------------------------------------ requests

    @torch.no_grad()
    def classify(self, task: str | None = None, **inputs: Sequence[Any]) -> list[ClassPrediction]:
        """Classify samples with a classification (or matching) task.

        Args:
            task: the task (default: the run's only classification/matching task).
            **inputs: modality -> one raw value per sample, e.g. ``image=["a.png"]``.

        Returns:
            Per sample, ``label`` (class name; the class index when the dataset card with the
            names is unavailable, with a warning), its ``score`` and every class's ``scores``.
        """
        name = find_task(self.config, task, CLASSIFYING, "classify")
        probs = self.probabilities(name, self.process(name, inputs)).cpu()
        classes = self.class_names(name)
        if classes.names is None:
            warnings.warn(
                f"class names of task {name!r} are unavailable ({classes.reason}); labels are "
                "class indices",
                stacklevel=2,
            )
        return [class_prediction(row, classes.names) for row in probs]

    @torch.no_grad()
    def generate_text(
        self, task: str, inputs: RawInputs, options: DecodingOptions | None = None
    ) -> list[str]:
        """Texts a captioning task writes for raw ``inputs``."""
        return self.texts(self.decode(task, self.process(task, inputs), options).tokens)

    def caption(
        self,
        images: Sequence[Any],
        options: DecodingOptions | None = None,
        task: str | None = None,
    ) -> list[str]:
        """Caption images with the captioning task whose only input is ``image``."""
        name = find_task(self.config, task, ("captioning",), "caption images", self._reads("image"))
        return self.generate_text(name, {"image": images}, options)

    def transcribe(
        self,
        audio: Sequence[Any],
        options: DecodingOptions | None = None,
        task: str | None = None,
    ) -> list[str]:
        """Transcribe audio (paths or ``(samples, rate)``) with the captioning task over audio."""
        name = find_task(
            self.config, task, ("captioning",), "transcribe audio", self._reads("audio")
        )
        return self.generate_text(name, {"audio": audio}, options)

    def answer(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        options: DecodingOptions | None = None,
        task: str | None = None,
    ) -> list[str]:
        """Answer questions about images (VQA).

        Uses a classification task over image + text (answers are its classes) or a captioning
        task over image + text (answers are generated with ``options``).
        """
        name = find_task(
            self.config,
            task,
            ("classification", "captioning"),
            "answer questions",
            self._reads("image", "text"),
        )
        raws = {"image": images, "text": questions}
        if self.tasks[name] == "captioning":
            return self.generate_text(name, raws, options)
        return [str(p["label"]) for p in self.classify(name, **raws)]

    @torch.no_grad()
    def embed(self, modality: str, inputs: Sequence[Any]) -> Tensor:
        """``[B, D]`` embeddings of one modality.

        Uses the projection head reading ``modality`` (the one a contrastive task names first),
        else the encoder's pooled output.
        """
        batch = {modality: self.process_modality(modality, inputs)}
        encoded = self.model.encode(batch)[modality]
        head = self.projection_head(modality)
        if head is None:
            return encoded.pooled
        out: Tensor = self.model.heads[head](encoded)
        return out

    def projection_head(self, modality: str) -> str | None:
        """The projection head reading ``modality``: one named by a task first, else any."""
        for task in self.config.tasks.values():
            for field in ("head_a", "head_b"):
                head = getattr(task, field, None)
                if head is not None and self.model.head_sources.get(head) == modality:
                    return str(head)
        for name, cfg in sorted(self.model.config.heads.items()):
            if cfg.type == "projection" and cfg.source == modality:
                return name
        return None

    @torch.no_grad()
    def fill_mask(
        self, texts: Sequence[str], task: str | None = None, top_k: int = 5, **other: Sequence[Any]
    ) -> list[FillMaskPrediction]:
        """Predict the tokens at every ``[MASK]`` of ``texts`` with an ``mlm`` task.

        Args:
            texts: texts holding the tokenizer's mask token.
            task: the mlm task (default: the only one).
            top_k: candidates per mask.
            **other: the task's other inputs when its head reads the fusion.
        """
        name = find_task(self.config, task, ("mlm",), "fill masks")
        return self.fill_mask_inputs(name, {"text": texts, **other}, top_k)

    def fill_mask_inputs(
        self, name: str, raws: RawInputs, top_k: int = 5
    ) -> list[FillMaskPrediction]:
        """:meth:`fill_mask` for mlm task ``name`` and all its raw inputs."""
        inputs = self.process(name, raws)
        logits = self._mlm_logits(self.head_of(name), inputs).float()  # (B, L, V)
        tokenizer = self.tokenizer()
        ids = inputs["text"]["input_ids"]
        return [fill_row(ids[row], logits[row], tokenizer, top_k) for row in range(ids.shape[0])]

    def _mlm_logits(self, head: str, inputs: Inputs) -> Tensor:
        encoded = self.model.encode(inputs)
        if self.model.head_sources[head] == "fused":
            features = text_segment(self.model.fusion(encoded), encoded)
        else:
            features = encoded["text"]
        logits: Tensor = self.model.heads[head](features)
        return logits

    @torch.no_grad()
    def reconstruct(
        self, task: str | None = None, seed: int = 0, **inputs: Sequence[Any]
    ) -> list[ReconstructionPrediction]:
        """Masked-modelling error per sample: hide tokens at random (``seed``), reconstruct.

        Returns:
            Per sample, the mean squared error over its hidden patches/frames and their number.
        """
        name = find_task(self.config, task, ("masked_modeling",), "reconstruct masked inputs")
        return self.reconstruct_inputs(name, inputs, seed)

    def reconstruct_inputs(
        self, name: str, raws: RawInputs, seed: int = 0
    ) -> list[ReconstructionPrediction]:
        """:meth:`reconstruct` for masked-modelling task ``name`` and its raw inputs."""
        module = self.task_module(name)
        processed = self.process(name, raws)
        count = int(next(iter(next(iter(processed.values())).values())).shape[0])
        out = []
        for row in range(count):
            one = {m: {k: v[row : row + 1] for k, v in b.items()} for m, b in processed.items()}
            with seeded(self.device, seed):
                result = module(self.model, {"inputs": one, "targets": {}, "ids": [str(row)]})
            out.append(
                ReconstructionPrediction(
                    reconstruction_mse=float(result["loss"]), masked=int(result["num_masked"])
                )
            )
        return out

    def task_module(self, task: str) -> Task:
        """The training :class:`~omnifuse.tasks.Task` of ``task`` (for its objective)."""
        cfg = check_task(self.config, task)
        context = TaskContext(self.config, self.model, self.processors)
        return task_builder(task_type(cfg))(task, cfg, context).to(self.device).eval()

    @torch.no_grad()
    def generate_video(
        self,
        texts: Sequence[str],
        out_dir: str | Path,
        fmt: Sequence[str] = ("mp4", "gif"),
        task: str | None = None,
        fps: int = 8,
        **generate_options: Any,
    ) -> list[list[Path]]:
        """Generate one clip per text with the model's ``video_generator`` head and write it.

        Args:
            texts: prompts.
            out_dir: directory for ``video_000.mp4``, ``video_000.gif`` ...
            fmt: formats to write, of ``mp4`` and ``gif``.
            task: a task naming the head (default: the model's only video generator head).
            fps: frames per second of the files.
            **generate_options: passed to the head's ``generate`` (e.g. sampling settings).

        Returns:
            Per text, the paths written (one per format, in ``fmt`` order).
        """
        formats = check_formats(fmt)
        head = self.video_head(task)
        frames = self.video_frames(head, texts, **generate_options)
        return write_clips(frames, Path(out_dir), formats, fps)

    def generates_video(self, task: str) -> bool:
        """Whether task ``task``'s head generates clips."""
        head = getattr(check_task(self.config, task), "head", None)
        return isinstance(head, str) and is_video_generator(self.model.heads[head])

    def video_head(self, task: str | None = None) -> str:
        """The video generator head of ``task``, or the model's only one."""
        if task is not None:
            head = self.head_of(task)
            if not is_video_generator(self.model.heads[head]):
                raise InferenceError(f"head {head!r} of task {task!r} does not generate video")
            return head
        heads = [h for h, m in self.model.heads.items() if is_video_generator(m)]
        if len(heads) != 1:
            found = ", ".join(heads) if heads else "none"
            raise InferenceError(
                f"generating video needs exactly one video generator head (found: {found}); "
                "name its task with task=... / --task"
            )
        return heads[0]

    def video_frames(self, head: str, texts: Sequence[str], **options: Any) -> Tensor:
        """``[B, T, 3, H, W]`` clips in ``[0, 1]`` that ``head`` generates for ``texts``."""
        encoded = self.model.encode({"text": self.process_modality("text", texts)})
        source = self.model.head_sources[head]
        features = self.model.fusion(encoded) if source == "fused" else encoded[source]
        generate: Any = getattr(self.model.heads[head], "generate")  # noqa: B009  # duck-typed head
        frames: Tensor = generate(features, **options)
        return check_frames(frames, len(texts), head)

    def predict(
        self,
        task: str | None = None,
        options: DecodingOptions | None = None,
        out_dir: str | Path | None = None,
        **inputs: Sequence[Any] | None,
    ) -> list[dict[str, Any]]:
        """Run task ``task`` on raw inputs, whatever its type (what ``omnifuse predict`` does).

        See :func:`omnifuse.inference.requests.predict` for the result of each task type.
        """
        from omnifuse.inference.requests import predict

        return predict(self, task, options, out_dir, inputs)

    def _reads(self, *modalities: str) -> Any:
        wanted = tuple(sorted(modalities))
        return lambda task: task.resolved_inputs(self.model.config) == wanted

    def __repr__(self) -> str:
        return f"Pipeline(tasks: {describe_tasks(self.config)}; device={self.device})"
