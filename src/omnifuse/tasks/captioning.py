"""``captioning``: teacher-forced text generation from the (fused) inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from omnifuse.config.tasks import CaptioningTaskConfig
from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.modalities.text import TextTokenizer
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import CaptioningLoss
from omnifuse.tasks.base import (
    Task,
    TaskContext,
    head_features,
    register_task,
    text_tokenizer_of,
)
from omnifuse.types import Batch


class CaptioningTask(Task):
    """Train a ``caption_decoder`` head to write a target text (caption, transcript, answer).

    Targets are tokenised with the text tokenizer (no [CLS]/[SEP]), truncated to the head's
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
    """

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
    ) -> None:
        super().__init__(name, weight, inputs)
        self.head, self.target_field = head, target
        self.tokenizer, self.max_length = tokenizer, max_length
        self.objective = CaptioningLoss(tokenizer.bos_id, tokenizer.pad_id, label_smoothing)

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

    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` (next-token cross-entropy), token ``accuracy`` and ``perplexity``."""
        inputs = self.select_inputs(batch)
        texts = self.target(batch, self.target_field)
        if not isinstance(texts, list):
            raise ValueError(
                f"task {self.name!r}: target {self.target_field!r} must be a list of texts; "
                f"got {type(texts).__name__} (a class field is encoded as indices: train a "
                "classification task on it, or declare it a string field in the card)"
            )
        features = head_features(model, self.head, model.encode(inputs))
        ids, mask = self.tokenize(texts, features.tokens.device)
        shifted = self.objective.shift(ids, mask)
        logits: Tensor = model.heads[self.head](
            features, shifted.decoder_input, shifted.decoder_mask
        )  # (B, L, V)
        out = self.objective(logits, shifted.targets)
        return {"loss": out.loss, "accuracy": out.accuracy, "perplexity": out.perplexity}


@register_task("captioning", "Teacher-forced caption / transcript decoding from fused inputs.")
def build_captioning_task(
    name: str, config: CaptioningTaskConfig, context: TaskContext
) -> CaptioningTask:
    """Registry builder; the tokenizer comes from the text processor."""
    head = context.model.heads[config.head]
    if not isinstance(head, CaptionDecoder):
        raise ValueError(f"tasks.{name}.head={config.head!r} is not a CaptionDecoder")
    return CaptioningTask(
        name,
        config.weight,
        config.resolved_inputs(context.model.config),
        config.head,
        config.target,
        text_tokenizer_of(context.processors, name),
        head.max_length,
        config.label_smoothing,
    )
