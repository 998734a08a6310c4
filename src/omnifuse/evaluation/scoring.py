"""One evaluation loop for every task type: batches -> ``Task.evaluate_batch`` -> ``Task.score``.

Each task type owns its metrics (``docs/metrics.md`` lists them); this module only walks the
evaluation data, keeps examples for the prediction grid, and adds what needs more than one run:
clips a video generator makes, judged by a separately trained video classifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from omnifuse.config.data import DataConfig
from omnifuse.errors import InferenceError
from omnifuse.evaluation.batches import iter_batches, pictures
from omnifuse.evaluation.results import EvalOptions, Example, TaskResult
from omnifuse.inference.inputs import build_run_task
from omnifuse.inference.pipeline import Pipeline, seeded
from omnifuse.tasks import (
    Evaluated,
    PredictOptions,
    ScoreOptions,
    Task,
    VideoTask,
    index_inputs,
)
from omnifuse.types import Batch, Inputs

if TYPE_CHECKING:
    from omnifuse.evaluation.judge import Judge


@dataclass(frozen=True)
class TaskEval:
    """One task to evaluate.

    Attributes:
        pipe: the loaded run.
        name: the task.
        data: its evaluation data config.
        split: ``val`` or ``test``.
        options: evaluation options.
        judge: a video classifier that judges generated clips (video generator tasks).
    """

    pipe: Pipeline
    name: str
    data: DataConfig
    split: str
    options: EvalOptions
    judge: Judge | None = None

    @property
    def config(self) -> Any:
        """The task's config."""
        return self.pipe.config.tasks[self.name]

    def batches(self) -> Iterator[Batch]:
        """The evaluation batches (a fresh pass each call), without ``drop_modalities``."""
        batches = iter_batches(self.pipe, self.data, self.split, self.options.max_samples)
        dropped = set(self.options.drop_modalities)
        for batch in batches:
            if dropped:
                batch["inputs"] = {m: v for m, v in batch["inputs"].items() if m not in dropped}
            yield batch

    @property
    def score_options(self) -> ScoreOptions:
        """The scoring part of the evaluation options."""
        opts = self.options
        return ScoreOptions(opts.candidates, opts.caption_tokenizer, opts.meteor)

    def task(self) -> Task:
        """The task type object, with the class names of the *evaluated* data's card (its
        label indices follow that card, which ``--data`` may replace)."""
        pipe = self.pipe
        task = build_run_task(pipe.config, pipe.model, pipe.processors, self.name, self.data)
        return task.to(pipe.device).eval()


@torch.no_grad()
def evaluate_task(job: TaskEval) -> TaskResult:
    """Evaluate one task: its predictions over the split, scored by its type (seeded)."""
    task, kind = job.task(), job.pipe.tasks[job.name]
    dropped = set(job.options.drop_modalities)
    if dropped and dropped >= set(task.inputs):
        return TaskResult(kind, note=f"skipped: every input dropped ({', '.join(sorted(dropped))})")
    predictions: list[Any] = []
    references: list[Any] = []
    examples: list[Example] = []
    limit = task.eval_limit(job.score_options)
    predict = PredictOptions(decoding=job.options.decoding)
    with seeded(job.pipe.device, job.options.seed):
        for batch in job.batches():
            _check_inputs(job, task, batch)
            out = task.evaluate_batch(job.pipe.model, batch, predict)
            predictions += out.predictions
            references += out.references
            examples += _examples(job, task, batch, out, job.options.examples - len(examples))
            if limit is not None and len(predictions) >= limit:
                break
        predictions = task.revise(job.pipe.model, predictions, job.score_options)
        scores = task.score(predictions, references, job.score_options)
    result = TaskResult(
        kind, scores.samples, scores.metrics, scores.note, scores.classes, scores.confusion
    )
    result.examples = examples
    if isinstance(task, VideoTask):
        _add_clips(job, task, result)
    return result


def _check_inputs(job: TaskEval, task: Task, batch: Batch) -> None:
    """The data holds at least one modality the task reads (else it cannot be evaluated)."""
    wanted = set(task.inputs)
    if not wanted & set(batch["inputs"]):
        raise InferenceError(
            f"task {job.name!r} reads {', '.join(sorted(wanted))}, but its data has only "
            f"{', '.join(sorted(batch['inputs'])) or 'no inputs'}"
        )


def _examples(job: TaskEval, task: Task, batch: Batch, out: Evaluated, room: int) -> list[Example]:
    """Up to ``room`` samples of this batch for the prediction grid (picture + prompt)."""
    if room <= 0 or out.rows is None or not out.rows:
        return []
    described = zip(out.rows, out.predictions, out.references, strict=True)
    shown = [(r, d) for r, p, ref in described if (d := task.describe(p, ref)) is not None][:room]
    if not shown:
        return []
    index = torch.tensor([r for r, _ in shown])
    inputs = {m: index_inputs(d, index) for m, d in task.available_inputs(batch).items()}
    images = pictures(inputs, job.pipe.processors, len(shown))
    prompts = _prompts(job, inputs, len(shown))
    return [Example(d[0], d[1], images[i], prompts[i]) for i, (_, d) in enumerate(shown)]


def _prompts(job: TaskEval, inputs: Inputs, count: int) -> list[str | None]:
    """The decoded text input of each row (e.g. the question), or Nones."""
    if "text" not in inputs:
        return [None] * count
    tokenizer = job.pipe.tokenizer()
    return [tokenizer.decode(row) for row in inputs["text"]["input_ids"].tolist()]


def _add_clips(job: TaskEval, task: VideoTask, result: TaskResult) -> None:
    """Clips from the first prompts for the frame plot; judged ones for ``video_generation``
    with a judge (the ``video_tokenizer`` task trains no prior: not judged twice)."""
    from omnifuse.evaluation.video import judge_task, sample_clips

    if job.judge is not None and task.type_name == "video_generation":
        judged, note = judge_task(job, task, job.judge)
        result.metrics |= judged.metrics() if judged.count else {}
        result.note = "; ".join(n for n in (result.note, note) if n)
        if judged.clips:
            result.clips, result.prompts = torch.stack(judged.clips), judged.prompts
            return
    result.clips, result.prompts = sample_clips(job.pipe, task, job.batches(), job.options.examples)
