"""``whisper_decoder`` head: the text decoder of a pretrained Whisper checkpoint.

Loads the decoder, its LM projection (tied to the token embedding), its tokenizer and its
generation settings (start / no-timestamps / end ids, suppressed ids) from one local HF Whisper
directory, e.g. the output of ``omnifuse convert whisper-ct2``. It cross-attends to the tokens
of the audio ``hf`` encoder built from the same directory: with that encoder's ``window:
native``, over the whole 30 s window as Whisper was trained (the context mask is not used); with
``window: input``, over the batch's positions with the padding masked out, so a clip's
transcript does not depend on what it is batched with.

It speaks the step-wise decoder protocol of :mod:`omnifuse.heads.decoding`
(``bos_id``/``eos_id``/``pad_id``/``max_length``, ``new_cache``/``step``/``reorder_cache``)
with transformers' own KV cache (``EncoderDecoderCache``), so omnifuse's greedy, beam and
nucleus searches decode it. ``bos_id`` is ``<|startoftranscript|>``; the rest of Whisper's
prompt (``<|notimestamps|>``, and language/task tokens for multilingual checkpoints) is
inserted after it inside the head, so callers see one start token like every other decoder,
and teacher-forced logits stay aligned with ``decoder_input``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from omnifuse.config.audio import AudioHFConfig
from omnifuse.config.heads import WhisperDecoderConfig
from omnifuse.heads.decoding import DecodingOptions, decode
from omnifuse.modalities.audio.adapters import padding_bias
from omnifuse.modalities.base import EncoderOutput
from omnifuse.modalities.hf import copy_hf_assets, load_hf_model, read_json_file
from omnifuse.modalities.text import TextTokenizer
from omnifuse.registry import HeadContext, register_head

if TYPE_CHECKING:
    from transformers.cache_utils import EncoderDecoderCache

GENERATION_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"


class WhisperTokenizer(TextTokenizer):
    """Whisper's byte-level BPE (``tokenizer.json``) behind omnifuse's tokenizer interface.

    Texts are encoded with a leading space, as Whisper writes them after its prompt, and
    without special tokens; ``bos`` is ``<|startoftranscript|>``, ``eos`` and ``pad`` are
    ``<|endoftext|>``. Decoding drops special tokens and strips the leading space.

    Args:
        path: the directory holding ``tokenizer.json``.
        bos_id: start id; eos_id: end id; pad_id: padding id.
    """

    def __init__(self, path: Path, bos_id: int, eos_id: int, pad_id: int) -> None:
        from tokenizers import Tokenizer

        file = path / TOKENIZER_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} in Whisper directory {path}")
        self.backend = Tokenizer.from_file(str(file))
        specials: dict[str, int | None] = {"bos": bos_id, "eos": eos_id, "pad": pad_id}
        super().__init__(specials, str(path))

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.backend.encode(" " + text.strip(), add_special_tokens=False).ids
        return ids

    def encode_for_model(self, text: str, max_length: int) -> list[int]:
        return [self.bos_id, *self.encode(text)][:max_length]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=True)).strip()

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / TOKENIZER_FILE))
        return {}


def read_generation_config(path: Path) -> dict[str, Any]:
    """The directory's ``generation_config.json`` (start / end ids, suppressed ids)."""
    why = "it names the prompt and end tokens (`omnifuse convert whisper-ct2` writes it)"
    return read_json_file(path, GENERATION_FILE, why)


def whisper_prompt(generation: dict[str, Any]) -> list[int]:
    """Whisper's decoder prompt: start, (``<|en|>``, ``<|transcribe|>`` if multilingual),
    no-timestamps."""
    prompt = [int(generation["decoder_start_token_id"])]
    if generation.get("is_multilingual"):
        prompt += [
            int(generation["lang_to_id"]["<|en|>"]),
            int(generation["task_to_id"]["transcribe"]),
        ]
    return [*prompt, int(generation["no_timestamps_token_id"])]


class WhisperDecoder(nn.Module):
    """Whisper's decoder + tied LM projection, with the prompt and token suppression built in.

    Args:
        path: local HF Whisper directory.
        max_length: most tokens to generate / longest target, EOS included (capped by the
            checkpoint's positions minus the prompt).
        pretrained: load the directory's weights; False: its architecture only (the weights
            then come from an omnifuse checkpoint, e.g. from the copy ``save_assets`` wrote).
        mask_context: mask the context's padding out of cross-attention (for an encoder with
            ``window: input``); False attends to every context position.
    """

    prompt_rest: Tensor
    suppress: Tensor
    suppress_begin: Tensor

    def __init__(
        self, path: Path, max_length: int, pretrained: bool = True, mask_context: bool = False
    ) -> None:
        super().__init__()
        self.source = path
        whisper = load_hf_model(path, pretrained, "WhisperForConditionalGeneration")
        # Unannotated in transformers.
        self.decoder: nn.Module = whisper.get_decoder()  # type: ignore[no-untyped-call]
        self.mask_context = mask_context
        self._context_bias: Tensor | None = None
        # transformers' WhisperDecoder.forward hands its layers encoder_attention_mask=None;
        # a pre-hook on each layer supplies the context's padding bias instead.
        for layer in cast(Any, self.decoder).layers:
            layer.register_forward_pre_hook(self._inject_context_bias, with_kwargs=True)
        self.proj_out: nn.Module = whisper.get_output_embeddings()  # type: ignore[no-untyped-call]
        # proj_out is tied to decoder.embed_tokens, as in the checkpoint.
        self.config = whisper.config
        generation = read_generation_config(path)
        prompt = whisper_prompt(generation)
        self.bos_id, self.eos_id = prompt[0], int(generation["eos_token_id"])
        pad = generation.get("pad_token_id", self.config.pad_token_id)
        self.pad_id = self.eos_id if pad is None else int(pad)
        self.max_length = min(max_length, int(self.config.max_target_positions) - len(prompt))
        self.register_buffer("prompt_rest", torch.tensor(prompt[1:]), persistent=False)
        vocab = int(self.config.vocab_size)
        self.register_buffer(
            "suppress", _id_mask(generation.get("suppress_tokens") or [], vocab), persistent=False
        )
        self.register_buffer(
            "suppress_begin",
            _id_mask(generation.get("begin_suppress_tokens") or [], vocab),
            persistent=False,
        )
        self.tokenizer = WhisperTokenizer(path, self.bos_id, self.eos_id, self.pad_id)

    def save_assets(self, directory: Path) -> dict[str, Any]:
        """Copy the Whisper directory's config, generation config and tokenizer (not its
        weights: ``model.safetensors`` holds the fine-tuned ones) so the run is self-contained."""
        return {"path": copy_hf_assets(self.source, directory)}

    @property
    def prompt_length(self) -> int:
        """Tokens of the prompt (start token included)."""
        return 1 + int(self.prompt_rest.shape[0])

    def _with_prompt(self, tokens: Tensor) -> Tensor:
        """``[B, t]`` ids, start token first -> ``[B, t + prompt_length - 1]``."""
        rest = self.prompt_rest.to(tokens.device).expand(tokens.shape[0], -1)
        return torch.cat([tokens[:, :1], rest, tokens[:, 1:]], dim=1)

    def _run(
        self, ids: Tensor, context: EncoderOutput, cache: EncoderDecoderCache | None
    ) -> Tensor:
        """Hidden ids ``[B, L]`` (prompt included, or only new ones with a cache) -> logits
        ``[B, L, V]``."""
        if self.mask_context:
            self._context_bias = padding_bias(context.mask, context.tokens.dtype)
        try:
            out = self.decoder(
                input_ids=ids,
                encoder_hidden_states=context.tokens,
                cache=cache,
                use_cache=cache is not None,
            )
        finally:
            self._context_bias = None
        logits: Tensor = self.proj_out(out.last_hidden_state)
        return logits

    def _inject_context_bias(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Forward pre-hook of every decoder layer: cross-attention gets the context bias
        ``[B, 1, 1, P]`` of the current :meth:`_run` (None: attend everywhere)."""
        return args, {**kwargs, "encoder_attention_mask": self._context_bias}

    def forward(
        self,
        features: EncoderOutput,
        decoder_input: Tensor | None = None,
        decoder_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``[B, L, V]`` for ``decoder_input [B, L]`` (start token first;
        position ``t`` scores the token after ``decoder_input[:, : t + 1]``); without
        ``decoder_input``, greedy ids ``[B, T]``.

        ``decoder_mask`` is accepted for the decoder protocol but not needed: targets are
        right-padded and attention is causal, so padding never reaches a real position.
        """
        if decoder_input is None:
            with torch.no_grad():
                return decode(self, features, DecodingOptions()).tokens
        logits = self._run(self._with_prompt(decoder_input), features, None)
        return logits[:, self.prompt_length - 1 :]

    def new_cache(self, static: bool = False) -> EncoderDecoderCache:
        """An empty self- and cross-attention cache for :meth:`step` (``static`` is ignored:
        transformers' growing cache is used either way)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        return EncoderDecoderCache(DynamicCache(), DynamicCache())

    def step(
        self, tokens: Tensor, cache: EncoderDecoderCache | None, fused: EncoderOutput
    ) -> Tensor:
        """Next-token logits ``[B, V]`` after each prefix ``tokens [B, t]`` (start token first),
        with Whisper's suppressed ids (and at the first position its begin-suppressed ids) at
        ``-inf``, as ``WhisperForConditionalGeneration.generate`` masks them.

        A non-empty ``cache`` must hold every prompt + prefix position but the last.
        """
        ids = self._with_prompt(tokens)
        if cache is not None and cache.get_seq_length() > 0:
            cached = cache.get_seq_length()
            if cached != ids.shape[1] - 1:
                raise ValueError(
                    f"the cache holds {cached} positions but the prompt + prefix has "
                    f"{ids.shape[1]}; pass a cache holding every position but the last"
                )
            ids = ids[:, -1:]
        logits = self._run(ids, fused, cache)[:, -1].float()
        blocked = self.suppress
        if tokens.shape[1] == 1:
            blocked = blocked | self.suppress_begin
        return logits.masked_fill(blocked.to(logits.device), float("-inf"))

    @staticmethod
    def reorder_cache(cache: EncoderDecoderCache, index: Tensor) -> EncoderDecoderCache:
        """Keep rows ``index`` (``[N]``, repeats allowed) of every cached key/value."""
        if cache.get_seq_length() > 0:
            cache.reorder_cache(cast("torch.LongTensor", index))
        return cache


def _id_mask(ids: Sequence[int], vocab: int) -> Tensor:
    """``[V]`` bool, True at ``ids``."""
    mask = torch.zeros(vocab, dtype=torch.bool)
    mask[torch.tensor([int(i) for i in ids], dtype=torch.long)] = True
    return mask


@register_head(
    "whisper_decoder",
    "Pretrained Whisper text decoder + tokenizer from a local HF directory (ASR).",
    context=True,
)
def build_whisper_decoder(config: WhisperDecoderConfig, context: HeadContext) -> nn.Module:
    """Registry builder: everything comes from ``config.path``; the source width must match.
    Cross-attention masks the context's padding when the source encoder has ``window: input``
    (the encoder config is the one place that says so)."""
    source = getattr(context.model.encoders, config.source, None)
    mask_context = isinstance(source, AudioHFConfig) and source.window == "input"
    head = WhisperDecoder(Path(config.path), config.max_length, context.pretrained, mask_context)
    width = int(head.config.d_model)
    if context.in_dim != width:
        raise ValueError(
            f"whisper_decoder at {config.path} cross-attends to width {width}, but its source "
            f"{config.source!r} gives {context.in_dim}; use the audio `hf` encoder of the same "
            "Whisper directory"
        )
    return head
