"""``captioning``: teacher-forced text generation from the (fused) inputs.

Serves ``caption`` (image), ``transcribe`` (audio) and ``answer`` (image + question); scores what
the text is: BLEU-4 / CIDEr / ROUGE-L (+ METEOR) for captions, WER / CER for transcripts, VQA
accuracy for answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import torch
from torch import Tensor

from omnifuse.config.tasks import CaptioningTaskConfig
from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.heads.decoding import decode
from omnifuse.heads.whisper_decoder import WhisperDecoder
from omnifuse.metrics import caption_metrics, speech_metrics, vqa_metrics
from omnifuse.modalities.text import TextTokenizer
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import CaptioningLoss
from omnifuse.tasks.base import (
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    decode_texts,
    register_task,
    text_tokenizer_of,
)
from omnifuse.tasks.classification import QUESTION_TYPE
from omnifuse.types import Batch, Inputs

TEXT_DECODERS = (CaptionDecoder, WhisperDecoder)
"""Heads a captioning task trains: a ``caption_decoder`` (the text encoder's tokenizer) or a
pretrained ``whisper_decoder`` (its own tokenizer)."""
KINDS = ("caption", "speech", "vqa")
"""What a captioning task's texts are, which decides how they are scored."""


@register_task
class CaptioningTask(Task):
    """Train a ``caption_decoder`` head to write a target text (caption, transcript, answer).

    Targets are tokenised with the text tokenizer (no [CLS]/[SEP]) or, for a ``whisper_decoder``
    head, with the head's own Whisper tokenizer (the prompt is the head's), truncated to the head's
    ``max_length - 1`` tokens and closed with EOS; the decoder reads BOS + the target shifted
    right and cross-attends to the fused :attr:`inputs` (by default only the image, so the
    caption is never an input). A sample without target text is not scored; a sample with a
    list of texts uses one of them at random.

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model.
        head: a ``caption_decoder`` head.
        target: target field holding the text.
        tokenizer: the text tokenizer (ids and EOS/BOS/PAD).
        max_length: longest target in tokens, EOS included.
        label_smoothing: in ``[0, 1)``.
        kind: ``caption``, ``speech`` (transcripts) or ``vqa`` (answers): how texts are scored.
    """

    type_name = "captioning"
    description = "Teacher-forced caption / transcript decoding from fused inputs."
    config_class = CaptioningTaskConfig
    serves = ("caption", "transcribe", "answer")

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        target: str,
        tokenizer: TextTokenizer,
        max_length: int,
        label_smoothing: float = 0.0,
        kind: str = "caption",
    ) -> None:
        super().__init__(name, weight, inputs)
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; valid choices: {', '.join(KINDS)}")
        self.head, self.target_field = head, target
        self.tokenizer, self.max_length = tokenizer, max_length
        self.objective = CaptioningLoss(tokenizer.bos_id, tokenizer.pad_id, label_smoothing)
        self.kind = kind

    @classmethod
    def from_config(cls, name: str, config: CaptioningTaskConfig, context: TaskContext) -> Self:
        """The tokenizer comes from the text processor; the kind from the inputs and target."""
        head = context.model.heads[config.head]
        if not isinstance(head, TEXT_DECODERS):
            raise ValueError(
                f"tasks.{name}.head={config.head!r} is not a CaptionDecoder or WhisperDecoder"
            )
        # A pretrained decoder brings the tokenizer its vocabulary belongs to.
        if isinstance(head, WhisperDecoder):
            tokenizer: TextTokenizer = head.tokenizer
        else:
            tokenizer = text_tokenizer_of(context.processors, name)
        inputs = config.resolved_inputs(context.model.config)
        data = config.data or context.run.data
        kind = "caption"
        if inputs == ("audio",) or config.target == "transcript":
            kind = "speech"
        elif config.target == "answer" or data.text_field == "question":
            kind = "vqa"
        return cls(
            name,
            config.weight,
            inputs,
            config.head,
            config.target,
            tokenizer,
            head.max_length,
            config.label_smoothing,
            kind,
        )

    def tokenize(self, texts: Sequence[Any], device: torch.device) -> tuple[Tensor, Tensor]:
        """Target texts -> ``ids [B, L]`` (ending in EOS, padded) and ``mask [B, L]`` bool."""
        rows = [self._encode(self._pick(text)) for text in texts]
        length = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), length), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = True
        return ids.to(device), mask.to(device)

    def _pick(self, text: Any) -> str | None:
        if isinstance(text, list | tuple):
            if not text:
                return None
            text = text[int(torch.randint(len(text), ()))]
        if text is not None and not isinstance(text, str):
            raise ValueError(
                f"task {self.name!r}: target {self.target_field!r} must hold texts; "
                f"got {type(text).__name__}"
            )
        return text

    def _encode(self, text: str | None) -> list[int]:
        if text is None:
            return []
        return [*self.tokenizer.encode(text)[: self.max_length - 1], self.tokenizer.eos_id]

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (next-token cross-entropy), token ``accuracy`` and ``perplexity``."""
        inputs = self.select_inputs(batch)
        texts = self.target(batch, self.target_field)
        if not isinstance(texts, list):
            raise ValueError(
                f"task {self.name!r}: target {self.target_field!r} must be a list of texts; "
                f"got {type(texts).__name__} (a class field is encoded as indices: train a "
                "classification task on it, or declare it a string field in the card)"
            )
        features = model.features(self.head, model.encode(inputs))
        ids, mask = self.tokenize(texts, features.tokens.device)
        shifted = self.objective.shift(ids, mask)
        logits: Tensor = model.heads[self.head](
            features, shifted.decoder_input, shifted.decoder_mask
        )  # (B, L, V)
        out = self.objective(logits, shifted.targets)
        return {"loss": out.loss, "accuracy": out.accuracy, "perplexity": out.perplexity}

    def generate(self, model: MultimodalModel, inputs: Inputs, options: PredictOptions) -> Tensor:
        """``[B, T]`` generated ids (see :func:`omnifuse.heads.decoding.decode`)."""
        decoder = model.heads[self.head]
        if not isinstance(decoder, TEXT_DECODERS):
            raise ValueError(f"head {self.head!r} of task {self.name!r} is not a text decoder")
        features = model.features(self.head, model.encode(inputs))
        return decode(decoder, features, options.decoding).tokens

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per sample its generated ``text`` (one batched decode)."""
        texts = decode_texts(self.tokenizer, self.generate(model, inputs, options))
        return [{"text": text} for text in texts]

    def references(self, batch: Batch) -> list[Any]:
        """``{"texts", "question_type"}`` per sample with target text; captions are scored
        against every caption of ``captions`` when the data has them."""
        refs = list(self.target(batch, self.target_field))
        many = batch["targets"].get("captions") if self.kind == "caption" else None
        if many is not None and self.target_field == "caption":
            refs = [m if m else r for m, r in zip(many, refs, strict=True)]
        kinds = batch["targets"].get(QUESTION_TYPE) or [None] * len(refs)
        return [
            None if not ref else {"text": ref, "type": t}
            for ref, t in zip(refs, kinds, strict=True)
        ]

    def describe(self, prediction: Prediction, reference: Any) -> tuple[str, str] | None:
        """The generated text and the (first) reference text."""
        ref = reference["text"]
        return str(prediction["text"]), ref if isinstance(ref, str) else str(ref[0])

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """Caption metrics, WER/CER or VQA accuracy, by :attr:`kind`."""
        if not predictions:
            return Scores(note=f"no samples with target {self.target_field!r}")
        preds = [str(p["text"]) for p in predictions]
        refs = [r["text"] for r in references]  # a text, or several references
        if self.kind == "speech":
            speech = speech_metrics(preds, [r if isinstance(r, str) else r[0] for r in refs])
            return Scores(len(preds), {"wer": speech.wer, "cer": speech.cer})
        if self.kind == "vqa":
            types = [r["type"] for r in references]
            known = all(t is not None for t in types)
            result = vqa_metrics(preds, refs, [str(t) for t in types] if known else None)
            return Scores(len(preds), {k: v for k, v in result.scalars().items() if v is not None})
        captions = caption_metrics(preds, refs, options.caption_tokenizer, options.meteor)  # type: ignore[arg-type]  # checked in EvalOptions
        metrics = {"bleu_4": captions.bleu4, "cider": captions.cider, "rouge_l": captions.rouge_l}
        return Scores(len(preds), metrics | ({"meteor": captions.meteor} if options.meteor else {}))
