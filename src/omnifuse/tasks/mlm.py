"""``mlm``: BERT-style masked language modelling on the text input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from omnifuse.config.tasks import MLMTaskConfig
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextTokenizer
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import MaskedLanguageModeling
from omnifuse.tasks.base import Task, TaskContext, register_task, text_tokenizer_of
from omnifuse.types import Batch


def text_segment(fused: EncoderOutput, encoded: Mapping[str, EncoderOutput]) -> EncoderOutput:
    """The text positions of a ``concat`` fusion's output, aligned with ``input_ids``.

    ``concat`` lays its tokens out as ``[CLS]`` then each present modality's tokens in sorted
    modality order, so the text segment starts after the [CLS] token and the modalities sorted
    before ``"text"``.

    Returns:
        tokens ``[B, L, D]``, mask ``[B, L]`` (L = text length), the fused ``pooled``.
    """
    start = 1 + sum(int(encoded[m].tokens.shape[1]) for m in sorted(encoded) if m < "text")
    length = int(encoded["text"].tokens.shape[1])
    total = 1 + sum(int(e.tokens.shape[1]) for e in encoded.values())
    if fused.tokens.shape[1] != total:
        raise ValueError(
            f"fused tokens have {fused.tokens.shape[1]} positions, not the {total} of a concat "
            "fusion ([CLS] + every modality's tokens); an mlm head on 'fused' needs "
            "model.fusion.type=concat"
        )
    return EncoderOutput(
        fused.tokens[:, start : start + length], fused.mask[:, start : start + length], fused.pooled
    )


class MLMTask(Task):
    """Mask text tokens (BERT 80/10/10; special tokens never) and predict the originals.

    With an ``mlm`` head on ``text``, only the text encoder runs; with one on ``fused`` (a
    ``concat`` fusion), the other :attr:`inputs` are fused with the masked text and the head
    reads the text segment of the fused tokens (vision-conditioned MLM, as in ALBEF).

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (must hold ``text``).
        head: an ``mlm`` head.
        objective: masking settings (mask id, vocabulary, special ids, probability).
    """

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        objective: MaskedLanguageModeling,
    ) -> None:
        super().__init__(name, weight, inputs)
        self.head = head
        self.objective = objective

    def forward(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` over masked tokens, their ``accuracy`` and ``perplexity``."""
        inputs = self.select_inputs(batch, ("text",))
        text = inputs["text"]
        masked = self.objective.mask(text["input_ids"], text["attention_mask"].bool())
        inputs = {**inputs, "text": {**text, "input_ids": masked.input_ids}}
        if model.head_sources[self.head] == "fused":
            encoded = model.encode(inputs)
            features = text_segment(model.fusion(encoded), encoded)
        else:
            features = model.encode({"text": inputs["text"]})["text"]
        logits: Tensor = model.heads[self.head](features)  # (B, L, V)
        out = self.objective(logits, masked.labels)
        return {"loss": out.loss, "accuracy": out.accuracy, "perplexity": out.perplexity}


def _special_ids(tokenizer: TextTokenizer) -> Sequence[int]:
    return sorted({i for i in tokenizer.specials.values() if i is not None})


@register_task("mlm", "BERT masked language modelling on the text input.")
def build_mlm_task(name: str, config: MLMTaskConfig, context: TaskContext) -> MLMTask:
    """Registry builder: mask id, vocabulary and special ids come from the text tokenizer."""
    tokenizer = text_tokenizer_of(context.processors, name)
    objective = MaskedLanguageModeling(
        tokenizer.mask_id, tokenizer.vocab_size, _special_ids(tokenizer), config.probability
    )
    inputs = config.resolved_inputs(context.model.config)
    return MLMTask(name, config.weight, inputs, config.head, objective)
