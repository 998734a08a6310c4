"""``mlm``: BERT-style masked language modelling on the text input.

Serves ``fill_mask`` (the top tokens at every ``[MASK]``); evaluated by its own loss, accuracy
and perplexity on seeded random masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from torch import Tensor

from omnifuse.config.tasks import MLMTaskConfig
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.text import TextTokenizer
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.objectives import MaskedLanguageModeling
from omnifuse.tasks.base import (
    LossScoredTask,
    Prediction,
    PredictOptions,
    TaskContext,
    register_task,
    text_tokenizer_of,
)
from omnifuse.types import Batch, Inputs


@register_task
class MLMTask(LossScoredTask):
    """Mask text tokens (BERT 80/10/10; special tokens never) and predict the originals.

    With an ``mlm`` head on ``text``, only the text encoder runs; with one on ``fused``, the other
    :attr:`inputs` are fused with the masked text and the head reads the text segment of the
    fused tokens (vision-conditioned MLM, as in ALBEF; any fusion that keeps text positions).

    Args:
        name: task name.
        weight: loss weight.
        inputs: modalities fed to the model (must hold ``text``).
        head: an ``mlm`` head.
        objective: masking settings (mask id, vocabulary, special ids, probability).
        tokenizer: the text tokenizer (decodes predicted tokens).
    """

    type_name = "mlm"
    description = "BERT masked language modelling on the text input."
    config_class = MLMTaskConfig
    serves = ("fill_mask",)

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: tuple[str, ...],
        head: str,
        objective: MaskedLanguageModeling,
        tokenizer: TextTokenizer | None = None,
    ) -> None:
        super().__init__(name, weight, inputs, required=("text",))
        self.head = head
        self.objective = objective
        self.tokenizer = tokenizer

    @classmethod
    def from_config(cls, name: str, config: MLMTaskConfig, context: TaskContext) -> Self:
        """Mask id, vocabulary and special ids come from the text tokenizer."""
        tokenizer = text_tokenizer_of(context.processors, name)
        objective = MaskedLanguageModeling(
            tokenizer.mask_id, tokenizer.vocab_size, _special_ids(tokenizer), config.probability
        )
        inputs = config.resolved_inputs(context.model.config)
        return cls(name, config.weight, inputs, config.head, objective, tokenizer)

    def logits(self, model: MultimodalModel, inputs: Inputs) -> Tensor:
        """``[B, L, V]`` token logits at every text position of (already masked) ``inputs``."""
        if model.reads_fusion(self.head):
            features: EncoderOutput = model.fusion(model.encode(inputs)).segment("text")
        else:
            features = model.encode({"text": inputs["text"]})["text"]
        logits: Tensor = model.heads[self.head](features)
        return logits

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Returns ``loss`` over masked tokens, their ``accuracy`` and ``perplexity``."""
        inputs = self.select_inputs(batch, ("text",))
        text = inputs["text"]
        masked = self.objective.mask(text["input_ids"], text["attention_mask"].bool())
        inputs = {**inputs, "text": {**text, "input_ids": masked.input_ids}}
        out = self.objective(self.logits(model, inputs), masked.labels)
        return {"loss": out.loss, "accuracy": out.accuracy, "perplexity": out.perplexity}

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per text: ``text`` with every ``[MASK]`` replaced by its top token, and ``masks``
        (per mask its ``position``, top ``options.top_k`` ``tokens`` and their ``scores``)."""
        if self.tokenizer is None:
            raise ValueError(f"task {self.name!r} was built without a tokenizer")
        logits = self.logits(model, inputs).float()
        ids = inputs["text"]["input_ids"]
        return [
            fill_row(ids[row], logits[row], self.tokenizer, options.top_k)
            for row in range(ids.shape[0])
        ]


def fill_row(ids: Tensor, logits: Tensor, tokenizer: TextTokenizer, top_k: int) -> Prediction:
    """One text: ``ids [L]`` and ``logits [L, V]`` -> its masks' candidates and filled text."""
    filled = ids.clone()
    masks = []
    for position in (ids == tokenizer.mask_id).nonzero().flatten().tolist():
        probs, tokens = logits[position].softmax(dim=-1).topk(top_k)
        filled[position] = tokens[0]
        masks.append(
            {
                "position": position,
                "tokens": [tokenizer.decode([t]) for t in tokens.tolist()],
                "scores": [float(p) for p in probs],
            }
        )
    return {"text": tokenizer.decode(filled.tolist()).strip(), "masks": masks}


def _special_ids(tokenizer: TextTokenizer) -> Sequence[int]:
    return sorted({i for i in tokenizer.specials.values() if i is not None})
