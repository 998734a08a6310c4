"""Per task type: run the model over the evaluation batches and compute the right metrics.

==================  =====================================================================
task type           metrics
==================  =====================================================================
classification      accuracy, macro-F1, confusion matrix; per question type for VQA
matching            accuracy on true pairs and in-batch negatives (each a with b of the next)
contrastive         retrieval recall@1/5/10, median rank, MRR in both directions
captioning          BLEU-4, CIDEr, ROUGE-L (+ METEOR); WER/CER for transcripts; VQA accuracy
                    for answers
mlm, masked_mod.    the task's loss (seeded masking) and its other outputs
video generator     PSNR of the head's tokenizer reconstruction, frames of generated clips;
                    with a judge: attribute accuracy of generated clips (and of real ones),
                    Fréchet distance of judge features
==================  =====================================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from omnifuse.config.data import DataConfig
from omnifuse.config.tasks import task_type
from omnifuse.data.collate import IGNORE_INDEX, Batch
from omnifuse.evaluation.batches import iter_batches, pictures, present, task_inputs, texts_of
from omnifuse.evaluation.results import EvalOptions, Example, TaskResult
from omnifuse.inference.options import InferenceError
from omnifuse.inference.pipeline import Inputs, Pipeline, seeded
from omnifuse.inference.runs import card_classes
from omnifuse.metrics import (
    caption_metrics,
    classification_metrics,
    image_text_retrieval,
    speech_metrics,
    vqa_metrics,
)
from omnifuse.tasks.base import index_encoded, index_inputs

if TYPE_CHECKING:
    from omnifuse.evaluation.judge import Judge
    from omnifuse.evaluation.video import JudgedClips


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


def target(job: TaskEval, batch: Batch, field: str) -> Any:
    """Target ``field`` of the batch, or an error naming the fields the data has."""
    if field not in batch["targets"]:
        raise InferenceError(
            f"task {job.name!r} is scored against target {field!r}, which its data lacks; "
            f"it has {', '.join(sorted(batch['targets'])) or 'no targets'}"
        )
    return batch["targets"][field]


def is_vqa(job: TaskEval) -> bool:
    """A question-answering task: the model reads questions or the target is the answer."""
    return job.data.text_field == "question" or getattr(job.config, "target", "") == "answer"


def per_type(hits: Sequence[float], types: Sequence[str | None]) -> dict[str, float | None]:
    """``accuracy/<type>`` -> mean of ``hits`` per question type."""
    groups: dict[str, list[float]] = defaultdict(list)
    for hit, kind in zip(hits, types, strict=True):
        groups[kind or "unknown"].append(hit)
    return {f"accuracy/{k}": sum(v) / len(v) for k, v in sorted(groups.items())}


# --------------------------------------------------------------------------- classification


def evaluate_classification(job: TaskEval) -> TaskResult:
    """Accuracy, macro-F1 and confusion matrix; per question type when the task is VQA."""
    pipe, field = job.pipe, job.config.target
    # The evaluated data's card: its class order is what the batch's label indices follow.
    classes = card_classes(job.data, field, pipe.num_classes(job.name)).names
    preds: list[int] = []
    refs: list[int] = []
    types: list[str | None] = []
    examples: list[Example] = []
    for batch in job.batches():
        inputs = task_inputs(pipe, job.name, batch)
        labels = target(job, batch, field).cpu()
        keep = (labels != IGNORE_INDEX) & present(inputs, labels.shape[0])
        predicted = pipe.probabilities(job.name, inputs).argmax(dim=-1).cpu()
        preds += predicted[keep].tolist()
        refs += labels[keep].tolist()
        kinds = texts_of(batch, "question_type") or [None] * len(keep)
        types += [k for k, kept in zip(kinds, keep.tolist(), strict=True) if kept]
        examples += _class_examples(job, inputs, predicted, labels, keep, classes, len(examples))
    if not refs:
        return TaskResult("classification", note=f"no labelled samples (target {field!r})")
    num_classes = pipe.num_classes(job.name)
    result = classification_metrics(preds, refs, num_classes, class_names=classes)
    metrics: dict[str, float | None] = {"accuracy": result.accuracy, "macro_f1": result.macro_f1}
    if is_vqa(job) and any(t is not None for t in types):
        metrics |= per_type([float(p == r) for p, r in zip(preds, refs, strict=True)], types)
    names = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
    return TaskResult(
        "classification",
        len(refs),
        metrics,
        classes=names,
        confusion=result.confusion_matrix.tolist(),
        examples=examples,
    )


def _class_examples(
    job: TaskEval,
    inputs: Inputs,
    predicted: Tensor,
    labels: Tensor,
    keep: Tensor,
    classes: Sequence[str] | None,
    shown: int,
) -> list[Example]:
    room = job.options.examples - shown
    if room <= 0:
        return []

    def name(index: int) -> str:
        return classes[index] if classes is not None else str(index)

    rows = keep.nonzero().flatten().tolist()[:room]
    images = pictures(inputs, job.pipe.processors, int(labels.shape[0]))
    prompts = _prompts(job, inputs)
    return [
        Example(name(int(predicted[r])), name(int(labels[r])), images[r], prompts[r]) for r in rows
    ]


def _prompts(job: TaskEval, inputs: Inputs) -> list[str | None]:
    """The decoded text input of each row (e.g. the question), or Nones."""
    if "text" not in inputs:
        rows = next(iter(next(iter(inputs.values())).values())).shape[0]
        return [None] * int(rows)
    tokenizer = job.pipe.tokenizer()
    return [tokenizer.decode(row) for row in inputs["text"]["input_ids"].tolist()]


# --------------------------------------------------------------------------- pairs


def evaluate_matching(job: TaskEval) -> TaskResult:
    """Accuracy of the matching head on true pairs and on in-batch negatives."""
    a, b, head = job.config.a, job.config.b, job.pipe.model.heads[job.config.head]
    hits: dict[str, list[float]] = {"matched": [], "unmatched": []}
    for batch in job.batches():
        inputs = task_inputs(job.pipe, job.name, batch)
        if a not in inputs or b not in inputs:
            continue
        encoded = job.pipe.model.encode(inputs)
        keep = present(inputs, int(encoded[a].tokens.shape[0])).to(job.pipe.device)
        enc_a, enc_b = index_encoded(encoded[a], keep), index_encoded(encoded[b], keep)
        count = int(enc_a.tokens.shape[0])
        if count == 0:
            continue
        positive = head(job.pipe.model.fusion({a: enc_a, b: enc_b})).argmax(dim=-1)
        hits["matched"] += (positive == 1).float().tolist()
        if count > 1:  # pair every a with the b of the next sample
            shifted = index_encoded(enc_b, torch.arange(count, device=keep.device).roll(1))
            negative = head(job.pipe.model.fusion({a: enc_a, b: shifted})).argmax(dim=-1)
            hits["unmatched"] += (negative == 0).float().tolist()
    every = hits["matched"] + hits["unmatched"]
    if not every:
        return TaskResult("matching", note=f"no samples with both {a} and {b}")
    metrics: dict[str, float | None] = {"accuracy": sum(every) / len(every)}
    for kind, values in hits.items():
        metrics[f"{kind}_accuracy"] = sum(values) / len(values) if values else None
    return TaskResult("matching", len(hits["matched"]), metrics)


def evaluate_contrastive(job: TaskEval) -> TaskResult:
    """Retrieval among the first ``options.candidates`` pairs, both directions."""
    cfg, model = job.config, job.pipe.model
    chunks: dict[str, list[Tensor]] = {cfg.a: [], cfg.b: []}
    total = 0
    for batch in job.batches():
        inputs = task_inputs(job.pipe, job.name, batch)
        if cfg.a not in inputs or cfg.b not in inputs:
            continue
        encoded = model.encode(inputs)
        keep = present(inputs, int(encoded[cfg.a].tokens.shape[0])).to(job.pipe.device)
        for modality, head in ((cfg.a, cfg.head_a), (cfg.b, cfg.head_b)):
            chunks[modality].append(model.heads[head](encoded[modality])[keep].float().cpu())
        total += int(keep.sum())
        if total >= job.options.candidates:
            break
    count = min(total, job.options.candidates)
    if count < 2:
        return TaskResult("contrastive", count, note="retrieval needs at least 2 pairs")
    emb_a = torch.cat(chunks[cfg.a])[:count]  # (N, E)
    emb_b = torch.cat(chunks[cfg.b])[:count]
    result = image_text_retrieval(emb_a @ emb_b.T, [[i] for i in range(count)])
    metrics = {
        key.replace("i2t/", f"{cfg.a}_to_{cfg.b}/").replace("t2i/", f"{cfg.b}_to_{cfg.a}/"): v
        for key, v in result.scalars().items()
    }
    return TaskResult("contrastive", count, metrics)


# --------------------------------------------------------------------------- captioning


def caption_kind(job: TaskEval) -> str:
    """``speech`` (transcripts), ``vqa`` (answers) or ``caption``."""
    if job.pipe.task_inputs(job.name) == ("audio",) or job.config.target == "transcript":
        return "speech"
    return "vqa" if is_vqa(job) else "caption"


def evaluate_captioning(job: TaskEval) -> TaskResult:
    """Generate a text per sample (``options.decoding``) and score it by what it is."""
    kind = caption_kind(job)
    preds: list[str] = []
    refs: list[Any] = []
    types: list[str | None] = []
    examples: list[Example] = []
    for batch in job.batches():
        inputs = task_inputs(job.pipe, job.name, batch)
        references = _references(job, batch, kind)
        rows = [
            i
            for i, keep in enumerate(present(inputs, len(references)).tolist())
            if keep and references[i] is not None
        ]
        if not rows:
            continue
        index = torch.tensor(rows, device=job.pipe.device)
        kept = {m: index_inputs(d, index) for m, d in inputs.items()}
        texts = job.pipe.texts(job.pipe.decode(job.name, kept, job.options.decoding).tokens)
        preds += texts
        refs += [references[i] for i in rows]
        kinds = texts_of(batch, "question_type") or [None] * len(references)
        types += [kinds[i] for i in rows]
        examples += _text_examples(job, kept, texts, [references[i] for i in rows], examples)
    if not preds:
        return TaskResult("captioning", note=f"no samples with target {job.config.target!r}")
    metrics = _text_metrics(job, kind, preds, refs, types)
    return TaskResult("captioning", len(preds), metrics, examples=examples)


def _references(job: TaskEval, batch: Batch, kind: str) -> list[Any]:
    """Per row its reference(s); every caption of ``captions`` when scoring ``caption``."""
    field = job.config.target
    refs = list(target(job, batch, field))
    many = texts_of(batch, "captions") if kind == "caption" and field == "caption" else None
    if many is not None:
        refs = [m if m else r for m, r in zip(many, refs, strict=True)]
    return refs


def _text_metrics(
    job: TaskEval, kind: str, preds: list[str], refs: list[Any], types: list[str | None]
) -> dict[str, float | None]:
    if kind == "speech":
        first = [r if isinstance(r, str) else r[0] for r in refs]
        speech = speech_metrics(preds, first)
        return {"wer": speech.wer, "cer": speech.cer}
    if kind == "vqa":
        known = all(t is not None for t in types)
        result = vqa_metrics(preds, refs, [str(t) for t in types] if known else None)
        return {k: v for k, v in result.scalars().items() if v is not None}
    opts = job.options
    captions = caption_metrics(preds, refs, opts.caption_tokenizer, opts.meteor)  # type: ignore[arg-type]  # checked in EvalOptions
    metrics = {"bleu_4": captions.bleu4, "cider": captions.cider, "rouge_l": captions.rouge_l}
    return metrics | ({"meteor": captions.meteor} if opts.meteor else {})


def _text_examples(
    job: TaskEval, inputs: Inputs, texts: list[str], refs: list[Any], shown: list[Example]
) -> list[Example]:
    room = job.options.examples - len(shown)
    if room <= 0:
        return []
    images = pictures(inputs, job.pipe.processors, room)
    prompts = _prompts(job, inputs)
    firsts = [ref if isinstance(ref, str) else ref[0] for ref in refs]
    return [
        Example(texts[i], firsts[i], images[i], prompts[i]) for i in range(min(room, len(texts)))
    ]


# --------------------------------------------------------------------------- losses, video


def evaluate_loss(job: TaskEval) -> TaskResult:
    """The task's own outputs (loss, accuracy ...), averaged over samples, masking seeded."""
    module = job.pipe.task_module(job.name)
    sums: dict[str, float] = defaultdict(float)
    count = 0
    with seeded(job.pipe.device, job.options.seed):
        for batch in job.batches():
            size = len(batch["ids"])
            for key, value in module(job.pipe.model, batch).items():
                sums[key] += float(value) * (1 if key.startswith("num_") else size)
            count += size
    if count == 0:
        return TaskResult(task_type(job.config), note="no samples")
    # Counts (``num_*``, e.g. masked tokens) are totals; everything else is a per-sample mean.
    metrics: dict[str, float | None] = {
        k: v if k.startswith("num_") else v / count for k, v in sums.items()
    }
    return TaskResult(task_type(job.config), count, metrics)


def evaluate_video(job: TaskEval) -> TaskResult:
    """PSNR of the generator head's tokenizer reconstruction; clips from the first prompts;
    for ``video_generation`` tasks with a judge, the judged attribute accuracy of one generated
    clip per prompt (the ``video_tokenizer`` task trains no prior: not judged twice)."""
    from omnifuse.evaluation.video import reconstruction_psnr, sample_clips

    head = job.pipe.head_of(job.name)
    psnr, count, note = reconstruction_psnr(job.pipe, head, job.batches())
    metrics: dict[str, float | None] = {} if psnr is None else {"psnr": psnr}
    if job.judge is not None and task_type(job.config) == "video_generation":
        judged, judge_note = _judge(job, head, job.judge)
        metrics |= judged.metrics() if judged.count else {}
        note = "; ".join(n for n in (note, judge_note) if n)
        if judged.clips:
            return TaskResult(
                task_type(job.config),
                count,
                metrics,
                note=note,
                clips=torch.stack(judged.clips),
                prompts=judged.prompts,
            )
    clips, prompts = sample_clips(job.pipe, head, job.batches(), job.options.examples)
    return TaskResult(
        task_type(job.config), count, metrics, note=note, clips=clips, prompts=prompts
    )


def _judge(job: TaskEval, head: str, judge: Judge) -> tuple[JudgedClips, str]:
    """:func:`~omnifuse.evaluation.video.judge_generation` over the task's data, seeded."""
    from omnifuse.evaluation.video import judge_generation

    sizes = {a.field: len(a.classes) for a in judge.attributes}

    def names(field: str) -> tuple[str, ...] | None:
        return card_classes(job.data, field, sizes[field]).names

    with seeded(job.pipe.device, job.options.seed):
        judged, note = judge_generation(
            job.pipe, head, job.batches(), judge, job.options.examples, names
        )
    if not judged.count:
        note = "; ".join(n for n in (note, "no prompt with a real clip and labels to judge") if n)
    return judged, note


EVALUATORS: dict[str, Callable[[TaskEval], TaskResult]] = {
    "classification": evaluate_classification,
    "matching": evaluate_matching,
    "contrastive": evaluate_contrastive,
    "captioning": evaluate_captioning,
    "mlm": evaluate_loss,
    "masked_modeling": evaluate_loss,
}


@torch.no_grad()
def evaluate_task(job: TaskEval) -> TaskResult:
    """Evaluate one task with the evaluator of its type (video generator heads: by duck type)."""
    if job.pipe.generates_video(job.name):
        return evaluate_video(job)
    kind = task_type(job.config)
    dropped = set(job.options.drop_modalities)
    if dropped and dropped >= set(job.pipe.task_inputs(job.name)):
        return TaskResult(kind, note=f"skipped: every input dropped ({', '.join(sorted(dropped))})")
    evaluator = EVALUATORS.get(kind)
    if evaluator is None:
        return TaskResult(kind, note=f"skipped: no evaluator for task type {kind!r}")
    return evaluator(job)
