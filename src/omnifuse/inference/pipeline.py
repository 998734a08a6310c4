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

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import task_type
from omnifuse.errors import InferenceError
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.inference.runs import check_task, describe_tasks, find_task, locate, run_config
from omnifuse.inference.runs import task_classes as card_class_names
from omnifuse.inference.video import check_formats, write_clips
from omnifuse.modalities.text import TextProcessor, TextTokenizer
from omnifuse.models import MultimodalModel, Processors, load
from omnifuse.tasks import PredictOptions, Task, TaskContext, task_class
from omnifuse.types import Inputs

RawInputs = Mapping[str, Sequence[Any] | None]
"""Raw inputs keyed by modality: one list entry (path, string, array) per sample."""


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
        device: where to run (default: CUDA when available, else CPU).
    """

    def __init__(
        self,
        model: MultimodalModel,
        processors: Processors,
        config: RunConfig,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
        """
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
            config = check_task(self.config, name)
            head = self.model.config.heads.get(str(getattr(config, "head", "")))
            classes = int(getattr(head, "num_classes", 0))
            found = card_class_names(self.config, name, classes) if classes else None
            if found is not None and found.names is None:
                warnings.warn(
                    f"class names of task {name!r} are unavailable ({found.reason}); labels are "
                    "class indices",
                    stacklevel=3,
                )
            known = {name: found.names} if found is not None and found.names else {}
            context = TaskContext(self.config, self.model, self.processors, known)
            task = task_class(task_type(config)).from_config(name, config, context)
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
        """Raw inputs of a request for task ``name`` -> processed inputs (on the device).

        Files are read first, so an unreadable one is reported with its path before anything
        else. A task that reads the fusion accepts any non-empty subset of its inputs.

        Raises:
            InferenceError: an input the task does not read, a missing required one, lists that
                are not lists, empty or of different lengths.
            MediaError: a value that cannot be loaded (names the path).
        """
        wanted, task = self.task_inputs(name), self.task(name)
        given = {m: v for m, v in raws.items() if v is not None}
        inputs = {m: self._process_modality(m, given[m]) for m in sorted(given) if m in wanted}
        problems = [f"it does not read {m}" for m in sorted(set(given) - set(wanted))]
        problems += [f"missing input {m}" for m in task.required if m not in given]
        if problems or not given:
            reason = "; ".join(problems) or "no input given"
            raise InferenceError(f"task {name!r} reads {', '.join(wanted)}: {reason}")
        sizes = {m: int(next(iter(batch.values())).shape[0]) for m, batch in inputs.items()}
        if len(set(sizes.values())) > 1:
            listing = ", ".join(f"{m}: {n}" for m, n in sizes.items())
            raise InferenceError(f"inputs differ in length ({listing}); give one per sample")
        return inputs

    def _process_modality(self, modality: str, values: Any) -> dict[str, Tensor]:
        if modality not in self.processors:
            configured = ", ".join(self.processors)
            raise InferenceError(f"the model has no {modality} encoder; configured: {configured}")
        if isinstance(values, str | Path | bytes) or not isinstance(values, Sequence):
            kind = type(values).__name__
            raise InferenceError(f"{modality}: pass a list with one entry per sample, got {kind}")
        if len(values) == 0:
            raise InferenceError(f"{modality}: got an empty list; pass at least one sample")
        batch = self.processors[modality](list(values))
        return {key: value.to(self.device) for key, value in batch.items()}

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
            return self._write_clips(name, predictions, out_dir)
        return [to_json(p) for p in predictions]

    def _write_clips(
        self,
        name: str,
        predictions: list[dict[str, Any]],
        out_dir: str | Path | None,
        fmt: Sequence[str] = ("mp4", "gif"),
        fps: int = 8,
    ) -> list[dict[str, Any]]:
        if out_dir is None:
            raise InferenceError(f"task {name!r} writes clips; pass an output directory (--out)")
        clips = torch.stack([p["frames"] for p in predictions])
        paths = write_clips(clips, Path(out_dir), check_formats(fmt), fps)
        return [{"files": [str(p) for p in row]} for row in paths]

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
        encoded = self.model.encode({modality: self._process_modality(modality, inputs)})[modality]
        heads = [
            h
            for t in self.config.tasks.values()
            for f in ("head_a", "head_b")
            if isinstance(h := getattr(t, f, None), str)
        ]
        heads += sorted(n for n, c in self.model.config.heads.items() if c.type == "projection")
        for head in heads:
            if self.model.head_sources.get(head) == modality:
                out: Tensor = self.model.heads[head](encoded)
                return out
        return encoded.pooled

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
