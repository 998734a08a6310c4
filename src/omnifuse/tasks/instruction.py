"""``instruction``: conversations through a local causal LM (a ``causal_lm`` head).

A conversation is ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``. It is
rendered with the LM tokenizer's chat template when the tokenizer has one, else with the plain
template below; every token outside an assistant turn gets IGNORE_INDEX, so only answers are
scored. A text target (``caption``, ``answer``, ``transcript``) is the conversation
``[user: prompt (or the question), assistant: text]``. Media placeholders (``<image>``,
``<audio>``, ``<video>``) are removed from the text: the projected media positions always come
first, before the rendered conversation.

Plain template (no chat template)::

    <bos>System: {content}\\n
    User: {content}\\n
    Assistant: {content}<eos>\\n

and a generation prompt ends with ``Assistant:``. Serves ``answer`` and ``chat``; captions and
transcripts come from ``predict`` (the configured ``prompt`` when a request gives no text).
Scores by ``kind`` with :mod:`omnifuse.metrics`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.config.tasks import InstructionTaskConfig
from omnifuse.heads.causal_lm import CausalLMHead
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.metrics import caption_metrics, speech_metrics, vqa_metrics
from omnifuse.modalities.base import EncoderOutput, Processor
from omnifuse.models.builder import Processors
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.tasks.base import (
    Evaluated,
    Prediction,
    PredictOptions,
    ScoreOptions,
    Scores,
    Task,
    TaskContext,
    register_task,
)
from omnifuse.types import IGNORE_INDEX, Batch, Inputs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
PLACEHOLDERS = re.compile(r"\s*<(image|audio|video)>\s*")
PLAIN_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def clean(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """Messages with media placeholders removed (and surrounding whitespace collapsed)."""
    out = []
    for message in messages:
        text = PLACEHOLDERS.sub(" ", str(message["content"])).strip()
        out.append({"role": str(message["role"]), "content": text})
    return out


class ChatFormat:
    """Renders and tokenizes conversations for one LM tokenizer.

    Args:
        tokenizer: the LM's tokenizer; its ``chat_template`` is used when set.
        max_length: conversations are cut to this many tokens.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length
        self.templated = getattr(tokenizer, "chat_template", None) is not None

    def render(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        """The conversation as text (ending in the assistant cue when ``generation_prompt``)."""
        if self.templated:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=generation_prompt
            )
            return str(text)
        tok = self.tokenizer
        parts = [tok.bos_token or ""]
        for m in messages:
            end = tok.eos_token if m["role"] == "assistant" else ""
            parts.append(f"{PLAIN_NAMES[m['role']]}: {m['content']}{end}\n")
        return "".join(parts) + ("Assistant:" if generation_prompt else "")

    def ids(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of a generation prompt after ``messages`` (cut from the left)."""
        return self.ids(self.render(messages, True))[-self.max_length :]

    def encode(self, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
        """``(ids, labels)`` of a conversation: labels are the ids of assistant turns (their
        end-of-turn tokens included) and IGNORE_INDEX elsewhere.

        Raises:
            ValueError: the template renders a prefix of the conversation as something that is
                not a prefix of the whole (its answer spans would then be ambiguous).
        """
        ids: list[int] = []
        labels: list[int] = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.ids(self.render(messages[:i], True))
            full = self.ids(self.render(messages[: i + 1], False))
            if prompt[: len(ids)] != ids or full[: len(prompt)] != prompt:
                raise ValueError(
                    "the chat template does not render conversations incrementally (a turn "
                    "changes the tokens before it); use a tokenizer whose template does"
                )
            labels += [IGNORE_INDEX] * (len(prompt) - len(ids)) + full[len(prompt) :]
            ids = full
        return ids[: self.max_length], labels[: self.max_length]


def pad(rows: Sequence[Sequence[int]], value: int) -> tuple[Tensor, Tensor]:
    """Right-padded ``[B, L]`` ids and their bool mask."""
    length = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask


class PromptProcessor(Processor[list[int]]):
    """Request texts -> generation-prompt ids of the LM (``{"input_ids", "attention_mask"}``).

    Each text is one user turn (after the task's system turn, if any).
    """

    modality: ClassVar[str] = "text"

    def __init__(self, chat: ChatFormat, system: str | None, pad_id: int) -> None:
        super().__init__()
        self.chat, self.system, self.pad_id = chat, system, pad_id

    def load(self, raw: Any) -> list[int]:
        turns = [] if self.system is None else [{"role": "system", "content": self.system}]
        return self.chat.prompt(clean([*turns, {"role": "user", "content": str(raw)}]))

    def collate(self, samples: Sequence[list[int]]) -> dict[str, Tensor]:
        ids, mask = pad(samples, self.pad_id)
        return {"input_ids": ids, "attention_mask": mask}


def generate_settings(options: DecodingOptions) -> dict[str, Any]:
    """``generate`` keyword arguments of omnifuse decoding options."""
    settings: dict[str, Any] = {"use_cache": options.use_cache, "num_beams": 1}
    if options.max_length is not None:
        settings["max_new_tokens"] = options.max_length
    if options.strategy == "beam":
        settings |= {"num_beams": options.beam_size, "length_penalty": options.length_penalty}
    if options.strategy == "nucleus":
        settings |= {"do_sample": True, "top_p": options.top_p, "temperature": options.temperature}
    else:
        settings |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return settings


@register_task
class InstructionTask(Task):
    """Train a ``causal_lm`` head on conversations; answer with the LM's own ``generate``.

    Args:
        name: task name.
        weight: loss weight.
        inputs: media modalities fed to the model (the text is the LM's prompt).
        head: a ``causal_lm`` head.
        config: the task config (target, kind, prompt, question field, system turn).
    """

    type_name = "instruction"
    description = "Conversations through a local causal LM; loss on assistant answers only."
    config_class = InstructionTaskConfig
    # Pipeline.caption / .transcribe pick tasks that read exactly image / audio; this one also
    # reads the request's text (the prompt), so captions and transcripts come from predict.
    serves = ("answer", "chat")

    def __init__(
        self,
        name: str,
        weight: float,
        inputs: Sequence[str],
        head: CausalLMHead,
        head_name: str,
        config: InstructionTaskConfig,
    ) -> None:
        # "text" is read by requests (the prompt, tokenized by the LM), never encoded.
        super().__init__(name, weight, (*inputs, "text"))
        self.media = tuple(inputs)
        self.head = head_name
        self.target_field, self.kind, self.default_prompt = (
            config.target,
            config.kind,
            config.prompt,
        )
        self.question_field, self.system = config.question_field, config.system
        self.chat = ChatFormat(head.tokenizer, head.max_length)
        self.prompts = PromptProcessor(self.chat, config.system, head.pad_id)

    @classmethod
    def from_config(cls, name: str, config: InstructionTaskConfig, context: TaskContext) -> Self:
        head = context.model.heads[config.head]
        if not isinstance(head, CausalLMHead):
            raise ValueError(f"tasks.{name}.head={config.head!r} is not a causal_lm head")
        inputs = config.resolved_inputs(context.model.config)
        return cls(name, config.weight, inputs, head, config.head, config)

    def lm(self, model: MultimodalModel) -> CausalLMHead:
        head = model.heads[self.head]
        if not isinstance(head, CausalLMHead):
            raise ValueError(f"head {self.head!r} of task {self.name!r} is not a causal_lm head")
        return head

    def request_processors(self, processors: Processors) -> Processors:
        """The model's processors, with request texts tokenized as LM prompts."""
        return {**processors, "text": self.prompts}

    # ------------------------------------------------------------------ conversations

    def conversation(self, value: Any, question: Any = None) -> list[Message] | None:
        """A target value -> the conversation to train on (None: nothing to score)."""
        if value is None or (isinstance(value, list | tuple) and not value):
            return None
        if isinstance(value, list) and isinstance(value[0], Mapping):
            turns = clean(value)
        else:
            answer = value if isinstance(value, str) else str(value[0])
            user = self.default_prompt if question is None else str(question)
            turns = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        has_system = bool(turns) and turns[0]["role"] == "system"
        if self.system is not None and not has_system:
            turns = [{"role": "system", "content": self.system}, *turns]
        return turns

    def conversations(self, batch: Batch) -> list[list[Message] | None]:
        values = self.target(batch, self.target_field)
        questions = (
            self.target(batch, self.question_field)
            if self.question_field is not None
            else [None] * len(values)
        )
        return [self.conversation(v, q) for v, q in zip(values, questions, strict=True)]

    def features(self, model: MultimodalModel, inputs: Inputs, rows: int) -> EncoderOutput:
        """What the head reads; zero media positions when no media is given (text-only chat)."""
        media = {m: d for m, d in inputs.items() if m != "text"}
        if media:
            return model.features(self.head, model.encode(media))
        width = model.fusion.dim if model.reads_fusion(self.head) else None
        if width is None:
            width = model.encoder(model.head_sources[self.head]).dim
        device = next(model.parameters()).device
        tokens = torch.zeros(rows, 0, width, device=device)
        mask = torch.zeros(rows, 0, dtype=torch.bool, device=device)
        return EncoderOutput(tokens, mask, torch.zeros(rows, width, device=device))

    # ------------------------------------------------------------------ training

    def loss(self, model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
        """Next-token cross-entropy over assistant tokens; token ``accuracy`` and ``perplexity``."""
        head = self.lm(model)
        encoded = [
            self.chat.encode(c) if c is not None else ([], []) for c in self.conversations(batch)
        ]
        features = self.features(model, self.available_inputs(batch), len(encoded))
        device = features.tokens.device
        ids, mask = pad([e[0] for e in encoded], head.pad_id)
        labels, _ = pad([e[1] for e in encoded], IGNORE_INDEX)
        lm_inputs = head.inputs(features, ids.to(device), mask.to(device), labels.to(device))
        logits = head.run(lm_inputs)[:, :-1]  # (B, S-1, V): position t scores token t + 1
        targets = lm_inputs.labels[:, 1:]  # type: ignore[index]  # labels were given
        scored = targets != IGNORE_INDEX
        if not bool(scored.any()):  # keep the graph: every rank must run backward
            return {"loss": logits.sum() * 0.0, "accuracy": logits.new_zeros(())}
        loss = F.cross_entropy(logits[scored].float(), targets[scored])
        accuracy = (logits[scored].argmax(-1) == targets[scored]).float().mean()
        return {"loss": loss, "accuracy": accuracy, "perplexity": loss.detach().exp()}

    # ------------------------------------------------------------------ prediction

    def generate_texts(
        self,
        model: MultimodalModel,
        inputs: Inputs,
        prompts: Sequence[Sequence[int]],
        options: DecodingOptions,
    ) -> list[str]:
        """One generated answer per prompt (token ids of a rendered generation prompt)."""
        head = self.lm(model)
        with torch.no_grad():
            features = self.features(model, inputs, len(prompts))
        ids, mask = pad(prompts, head.pad_id)
        device = features.tokens.device
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if options.strategy == "nucleus" and options.seed is not None:
                torch.manual_seed(options.seed)
            tokens = head.generate(
                features, ids.to(device), mask.to(device), **generate_settings(options)
            )
        texts = []
        for row in tokens.tolist():
            row = row[: row.index(head.eos_id)] if head.eos_id in row else row
            texts.append(str(head.tokenizer.decode(row, skip_special_tokens=True)).strip())
        return texts

    def predict(
        self, model: MultimodalModel, inputs: Inputs, options: PredictOptions
    ) -> list[Prediction]:
        """Per sample its generated ``text``; the prompt is the request's ``text`` (one user
        turn) or the configured ``prompt``."""
        text = inputs.get("text")
        if text is None:
            rows = next(iter(next(iter(inputs.values())).values())).shape[0]
            prompts = [self.prompts.load(self.default_prompt)] * int(rows)
        else:
            prompts = [
                r[m].tolist()
                for r, m in zip(text["input_ids"], text["attention_mask"].bool(), strict=True)
            ]
        return [{"text": t} for t in self.generate_texts(model, inputs, prompts, options.decoding)]

    def reply(
        self,
        model: MultimodalModel,
        inputs: Inputs,
        messages: Sequence[Message],
        options: DecodingOptions,
    ) -> str:
        """The next assistant turn of one conversation (``inputs``: its media, batch of 1)."""
        turns = self.conversation(list(messages)) or []
        return self.generate_texts(model, inputs, [self.chat.prompt(turns)], options)[0]

    # ------------------------------------------------------------------ scoring

    def references(self, batch: Batch) -> list[Any]:
        """Per sample its last assistant turn (None without one)."""
        refs: list[Any] = []
        for turns in self.conversations(batch):
            answers = [m["content"] for m in turns or [] if m["role"] == "assistant"]
            refs.append({"text": answers[-1]} if answers else None)
        return refs

    def evaluate_batch(
        self, model: MultimodalModel, batch: Batch, options: PredictOptions
    ) -> Evaluated:
        """Each conversation up to its last assistant turn is the prompt; that turn the
        reference."""
        convs = self.conversations(batch)
        refs = self.references(batch)
        rows = [i for i, ref in enumerate(refs) if ref is not None]
        if not rows:
            return Evaluated([], [])
        prompts = []
        for i in rows:
            turns = convs[i] or []
            last = max(j for j, m in enumerate(turns) if m["role"] == "assistant")
            prompts.append(self.chat.prompt(turns[:last]))
        inputs = self.available_inputs(batch)
        index = torch.tensor(rows)
        kept = {m: {k: v[index.to(v.device)] for k, v in d.items()} for m, d in inputs.items()}
        texts = self.generate_texts(model, kept, prompts, options.decoding)
        return Evaluated([{"text": t} for t in texts], [refs[i] for i in rows], rows)

    def describe(self, prediction: Prediction, reference: Any) -> tuple[str, str] | None:
        return str(prediction["text"]), str(reference["text"])

    def score(
        self, predictions: Sequence[Prediction], references: Sequence[Any], options: ScoreOptions
    ) -> Scores:
        """By :attr:`kind`: caption metrics, VQA accuracy, WER/CER, or (chat) exact match with
        BLEU-4 and ROUGE-L."""
        if not predictions:
            return Scores(note=f"no samples with an assistant turn in {self.target_field!r}")
        preds = [str(p["text"]) for p in predictions]
        refs = [str(r["text"]) for r in references]
        if self.kind == "speech":
            speech = speech_metrics(preds, refs)
            return Scores(len(preds), {"wer": speech.wer, "cer": speech.cer})
        if self.kind == "vqa":
            result = vqa_metrics(preds, refs)
            return Scores(len(preds), {k: v for k, v in result.scalars().items() if v is not None})
        tokenizer = options.caption_tokenizer
        captions = caption_metrics(preds, refs, tokenizer, options.meteor)  # type: ignore[arg-type]  # checked in EvalOptions
        metrics: dict[str, float | None] = {"bleu_4": captions.bleu4, "rouge_l": captions.rouge_l}
        if self.kind == "caption":
            metrics["cider"] = captions.cider
        else:
            exact = [
                p.strip().lower() == r.strip().lower() for p, r in zip(preds, refs, strict=True)
            ]
            metrics["exact_match"] = sum(exact) / len(exact)
        if options.meteor:
            metrics["meteor"] = captions.meteor
        return Scores(len(preds), metrics)
