"""The inference API: ``Pipeline.load(run_dir)``, then ``predict`` any task (or the shortcuts).

A thin façade over the run's task types (:class:`~omnifuse.tasks.Task`): it loads the run,
processes raw inputs with the model's own processors, and calls the task's batched ``predict``
(one forward pass per request)::

    from omnifuse.inference import DecodingOptions, Pipeline

    pipe = Pipeline.load("runs/shapes")
    pipe.classify(image=["cat.png"])            # [{"label": "circle", "score": 0.9, ...}]
    pipe.caption(["cat.png"], DecodingOptions(strategy="beam", beam_size=4))

A file that cannot be read raises :class:`~omnifuse.modalities.base.MediaError` naming its path;
a request the run cannot serve raises :class:`~omnifuse.errors.InferenceError` listing the
valid choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import task_type
from omnifuse.errors import InferenceError
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.inference.devices import default_device, parse_device
from omnifuse.inference.inputs import (
    RawInputs,
    build_run_task,
    embedding_head,
    process_request,
    process_values,
)
from omnifuse.inference.runs import (
    check_task,
    describe_tasks,
    find_task,
    locate,
    run_config,
    task_data,
)
from omnifuse.inference.video import clip_files
from omnifuse.modalities.text import TextProcessor, TextTokenizer
from omnifuse.models import MultimodalModel, Processors, load
from omnifuse.tasks import PredictOptions, Task
from omnifuse.types import Inputs


@contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Run the body with torch's RNGs (CPU, and ``device`` if CUDA) seeded, restoring them after
    (random masking then gives the same result on every call)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class Pipeline:
    """A loaded model with its processors and run config, ready for requests.

    Args:
        model: the model (put in eval mode and moved to ``device``).
        processors: its processors (put in eval mode: no augmentation).
        config: the run config, whose ``tasks`` serve requests.
        device: where to run (default: CUDA when available, else CPU); checked by
            :func:`~omnifuse.inference.devices.parse_device` (an InferenceError that lists the
            valid devices).
    """

    def __init__(
        self,
        model: MultimodalModel,
        processors: Processors,
        config: RunConfig,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = parse_device(device) or default_device()
        self.model = model.to(self.device).eval()
        self.processors = processors
        for processor in processors.values():
            processor.eval()
        self.config = config
        self._tasks: dict[str, Task] = {}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Pipeline:
        """Load a run directory (its ``model/`` and ``config.yaml``) or a model directory.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            InferenceError: not a run/model directory, or a run without a saved model.
            ConfigError: an invalid config file.
            InferenceError: ``device`` is not a device this machine has (checked first).
        """
        device = parse_device(device)
        files = locate(path)
        pretrained = load(files.model_dir)
        config = run_config(files, pretrained.config, pretrained.model.config)
        return cls(pretrained.model, pretrained.processors, config, device)

    @property
    def tasks(self) -> dict[str, str]:
        """Task name -> task type, in config order."""
        return {name: task_type(task) for name, task in self.config.tasks.items()}

    def task(self, name: str) -> Task:
        """The task type object of task ``name`` (built once; class names from its card)."""
        if name not in self._tasks:
            check_task(self.config, name)
            data = task_data(self.config, name)
            task = build_run_task(self.config, self.model, self.processors, name, data, warn=True)
            self._tasks[name] = task.to(self.device).eval()
        return self._tasks[name]

    def task_inputs(self, name: str) -> tuple[str, ...]:
        """The modalities a prediction of task ``name`` reads, sorted."""
        task = self.task(name)
        return tuple(sorted(task.predict_inputs or task.inputs))

    def tokenizer(self) -> TextTokenizer:
        """The text tokenizer (decoded texts, masks)."""
        processor = self.processors.get("text")
        if not isinstance(processor, TextProcessor):
            raise InferenceError("this model has no text processor; configure a text encoder")
        return processor.tokenizer

    def process(self, name: str, raws: RawInputs) -> Inputs:
        """Raw inputs of a request for task ``name`` -> processed inputs (see
        :func:`~omnifuse.inference.inputs.process_request`)."""
        reads = self.task_inputs(name)
        return process_request(self.processors, self.device, self.task(name), reads, raws)

    @torch.no_grad()
    def predict(
        self,
        task: str | None = None,
        options: DecodingOptions | PredictOptions | None = None,
        out_dir: str | Path | None = None,
        **inputs: Sequence[Any] | None,
    ) -> list[dict[str, Any]]:
        """Run task ``task`` (default: the run's only task) on raw inputs; JSON-ready results.

        Each task type decides what a prediction holds (see ``docs/inference.md``); generated
        clips are written to ``out_dir`` (``{"files": [...]}``). Random masking is seeded (0).
        """
        name = find_task(self.config, task, None, "predict")
        opts = (
            options
            if isinstance(options, PredictOptions)
            else PredictOptions(options or DecodingOptions())
        )
        with seeded(self.device, 0):
            predictions = self.task(name).predict(self.model, self.process(name, inputs), opts)
        if any("frames" in p for p in predictions):
            return clip_files(name, predictions, out_dir)
        return [to_json(p) for p in predictions]

    def serve(
        self, verb: str, task: str | None, reads: Sequence[str], **inputs: Any
    ) -> list[dict[str, Any]]:
        """:meth:`predict` with the task that serves ``verb`` (and reads exactly ``reads``, when
        given); ``options`` and ``out_dir`` among ``inputs`` go to :meth:`predict`."""
        wanted = tuple(sorted(reads))

        def fits(name: str) -> bool:
            return not wanted or self.task_inputs(name) == wanted

        name = find_task(self.config, task, verb, verb.replace("_", " "), fits)
        options, out_dir = inputs.pop("options", None), inputs.pop("out_dir", None)
        return self.predict(name, options, out_dir, **inputs)

    def classify(self, task: str | None = None, **inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Per sample ``label``, ``index``, ``score`` and every class's ``scores``."""
        return self.serve("classify", task, (), **inputs)

    def caption(
        self, images: Sequence[Any], options: DecodingOptions | None = None, task: str | None = None
    ) -> list[str]:
        """Captions of images (the captioning task whose only input is ``image``)."""
        return [
            p["text"]
            for p in self.serve("caption", task, ("image",), image=images, options=options)
        ]

    def transcribe(
        self, audio: Sequence[Any], options: DecodingOptions | None = None, task: str | None = None
    ) -> list[str]:
        """Transcripts of audio (paths or ``(samples, rate)``)."""
        return [
            p["text"]
            for p in self.serve("transcribe", task, ("audio",), audio=audio, options=options)
        ]

    def answer(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        options: DecodingOptions | None = None,
        task: str | None = None,
    ) -> list[str]:
        """Answers to questions about images (VQA by classification or generation)."""
        rows = self.serve(
            "answer", task, ("image", "text"), image=images, text=questions, options=options
        )
        return [str(p["text"] if "text" in p else p["label"]) for p in rows]

    def fill_mask(
        self, texts: Sequence[str], task: str | None = None, top_k: int = 5, **other: Sequence[Any]
    ) -> list[dict[str, Any]]:
        """The top tokens at every ``[MASK]`` of ``texts`` (an ``mlm`` task)."""
        options = PredictOptions(top_k=top_k)
        return self.serve("fill_mask", task, (), text=texts, options=options, **other)

    def reconstruct(self, task: str | None = None, **inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Masked-modelling error per sample (``reconstruction_mse``, ``masked``)."""
        return self.serve("reconstruct", task, (), **inputs)

    def generate_video(
        self, texts: Sequence[str], out_dir: str | Path, task: str | None = None, **generate: Any
    ) -> list[list[Path]]:
        """Generate one clip per text and write it (mp4 + gif); per text the paths written."""
        options = PredictOptions(generate=generate)
        rows = self.serve(
            "generate_video", task, ("text",), text=texts, options=options, out_dir=out_dir
        )
        return [[Path(f) for f in row["files"]] for row in rows]

    @torch.no_grad()
    def embed(self, modality: str, inputs: Sequence[Any]) -> Tensor:
        """``[B, D]`` embeddings of one modality: the projection head reading it (the one a
        task names first), else the encoder's pooled output."""
        batch = {modality: process_values(self.processors, self.device, modality, inputs)}
        encoded = self.model.encode(batch)[modality]
        head = embedding_head(self.config, self.model, modality)
        return encoded.pooled if head is None else self.model.heads[head](encoded)

    def __repr__(self) -> str:
        return f"Pipeline(tasks: {describe_tasks(self.config)}; device={self.device})"


def to_json(value: Any) -> Any:
    """Predictions -> JSON-ready values (tensors become lists)."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value
