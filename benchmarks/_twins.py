"""Same-shape twins for ``benchmarks/vs_hf.py``: an omnifuse model (built from a run config, as a
user builds it) and a transformers model of the same layers, widths, heads, MLP, vocabulary,
lengths and dropout, each with a zero-argument ``step`` doing the same work.

Every builder returns a :class:`Pair`; the parameters counted are those of the modules the step
runs (trainable or frozen), so the modules an omnifuse model builds but the step never reads (the
fusion of a contrastive or captioning run, the text tower a captioner keeps for its tokenizer)
are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from omnifuse.config import RunConfig
from omnifuse.heads.decoding import DecodingOptions, decode
from omnifuse.models import MultimodalModel, build_model
from omnifuse.tasks.base import PredictOptions, build_tasks
from omnifuse.types import Batch

Step = Callable[[], None]


@dataclass(frozen=True)
class Shapes:
    """One set of dimensions shared by both sides of a pair.

    Attributes:
        dim: width of every tower.
        layers: Transformer blocks per tower (vision, text or decoder).
        heads: attention heads.
        mlp_ratio: MLP hidden width / ``dim``.
        image_size: square image side in pixels.
        patch: ViT patch side.
        text_length: text / caption tokens per sample (EOS included).
        batch: samples per step.
        dropout: every dropout rate (0: both sides do identical arithmetic).
    """

    dim: int = 256
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    image_size: int = 64
    patch: int = 8
    text_length: int = 32
    batch: int = 64
    dropout: float = 0.0

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch) ** 2


@dataclass
class Side:
    """One contender: its step and the parameters that step uses."""

    step: Step
    params: int


@dataclass
class Pair:
    """omnifuse and transformers doing the same work; ``work`` units (samples or tokens) per
    step, ``flops`` the analytic FLOPs per step."""

    omnifuse: Side
    hf: Side
    work: int
    flops: float


# ------------------------------------------------------------------------------ omnifuse side


def vit(s: Shapes) -> dict[str, Any]:
    """The omnifuse ViT encoder config of these shapes."""
    return {
        "type": "vit",
        "dim": s.dim,
        "num_layers": s.layers,
        "num_heads": s.heads,
        "mlp_ratio": s.mlp_ratio,
        "dropout": s.dropout,
        "patch_size": s.patch,
        "pooling": "cls",
        "processor": {"image_size": s.image_size},
    }


def text_encoder(s: Shapes, layers: int | None = None, dim: int | None = None) -> dict[str, Any]:
    """The omnifuse text encoder (byte tokenizer) config of these shapes."""
    return {
        "type": "transformer",
        "dim": dim or s.dim,
        "num_layers": s.layers if layers is None else layers,
        "num_heads": s.heads if dim is None else 1,
        "mlp_ratio": s.mlp_ratio,
        "dropout": s.dropout,
        "max_positions": s.text_length,
        "tokenizer": {"type": "byte", "max_length": s.text_length},
    }


def omnifuse_run(model: dict[str, Any], tasks: dict[str, Any]) -> RunConfig:
    """A run config around ``model`` and ``tasks`` (the data paths are never read)."""
    return RunConfig.model_validate(
        {
            "name": "vs-hf",
            "model": model,
            "data": {"train": "unused.jsonl", "fields": ["caption"]},
            "tasks": tasks,
        }
    )


def build_omnifuse(run: RunConfig) -> tuple[MultimodalModel, Any, Any]:
    """Model, its single task (typed ``Any``: each group calls its own task type's methods)
    and processors of ``run``."""
    model, processors = build_model(run.model, pretrained=False)
    (task,) = build_tasks(run, model, processors).values()
    return model, task, processors


UNUSED_BY_CAPTIONER = ("encoders.text", "fusion")
"""omnifuse captioner modules its steps never run (the tokenizer-only text tower, the fusion)."""


def used_params(module: nn.Module, unused: tuple[str, ...] = ()) -> int:
    """Parameters of ``module`` outside the submodules named by the ``unused`` prefixes."""
    return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(unused))


def train_step(
    module: nn.Module, loss: Callable[[], Tensor], autocast: bool
) -> tuple[Step, torch.optim.Optimizer]:
    """One AdamW step (zero grad, forward, backward, update), optionally under CPU bf16
    autocast: the same recipe for both sides."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            value = loss()
        value.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    module.train()
    return step, optimizer


def counted_side(module: nn.Module, step: Step, unused: tuple[str, ...] = ()) -> Side:
    """Run ``step`` once (warm-up) and count the parameters it runs."""
    step()
    return Side(step, used_params(module, unused))


# ------------------------------------------------------------------------------ inputs


def images(s: Shapes) -> Tensor:
    """``[B, 3, S, S]`` random pixels (already normalised)."""
    return torch.randn(s.batch, 3, s.image_size, s.image_size)


def captions(s: Shapes) -> list[str]:
    """``B`` texts of ``text_length - 1`` bytes, so targets are ``text_length`` with EOS."""
    alphabet = "abcdefghijklmnopqrstuvwxyz "
    return [
        "".join(alphabet[(i * 7 + j * 3) % len(alphabet)] for j in range(s.text_length - 1))
        for i in range(s.batch)
    ]


def text_batch(processors: Any, texts: list[str]) -> dict[str, Tensor]:
    """The text processor's batch of ``texts`` (ids and mask)."""
    out: dict[str, Tensor] = processors["text"](texts)
    return out


def batch_of(inputs: dict[str, dict[str, Tensor]], texts: list[str]) -> Batch:
    """A data-layer batch: ``inputs`` plus the captions as target texts."""
    return {
        "inputs": inputs,
        "targets": {"caption": texts},
        "ids": [str(i) for i in range(len(texts))],
    }


# ------------------------------------------------------------------------------ FLOPs


def block_flops(n: int, d: int, r: int, context: int = 0) -> float:
    """Forward FLOPs of one Transformer block over ``n`` tokens of width ``d`` (MLP ``r * d``):
    q/k/v/out projections, scores and weighted sum over all ``n`` keys, the MLP; with
    ``context > 0`` also a cross-attention to ``context`` tokens (k/v projected from them)."""
    flops = 2 * n * 4 * d * d + 2 * 2 * n * n * d + 2 * 2 * n * r * d * d
    if context:
        flops += 2 * n * 2 * d * d + 2 * context * 2 * d * d + 2 * 2 * n * context * d
    return float(flops)


def vit_flops(s: Shapes) -> float:
    """Forward FLOPs of the ViT on one image: patch embedding + blocks over 1 + N tokens."""
    patch_embed = 2 * s.patches * 3 * s.patch * s.patch * s.dim
    return patch_embed + s.layers * block_flops(1 + s.patches, s.dim, s.mlp_ratio)


def decoder_flops(s: Shapes, vocab: int, n: int, past: int = 0) -> float:
    """Forward FLOPs of the caption decoder over ``n`` new tokens after ``past`` cached ones:
    blocks (self-attention over ``past + n`` keys, cross-attention to the image tokens) plus the
    LM projection. With a cache the context's keys/values are projected once, at ``past == 0``."""
    d, r, ctx = s.dim, s.mlp_ratio, 1 + s.patches
    keys = past + n
    per_block = 2 * n * 4 * d * d + 2 * 2 * n * keys * d + 2 * 2 * n * r * d * d
    per_block += 2 * n * 2 * d * d + 2 * 2 * n * ctx * d
    if past == 0:
        per_block += 2 * ctx * 2 * d * d
    return float(s.layers * per_block + 2 * n * d * vocab)


# ------------------------------------------------------------------------------ CLIP


def clip_pair(s: Shapes, autocast: bool) -> Pair:
    """CLIP-style contrastive training: ViT + text Transformer, linear projections, InfoNCE."""
    from transformers import CLIPConfig, CLIPModel

    run = omnifuse_run(
        {
            "encoders": {"image": vit(s), "text": text_encoder(s)},
            "fusion": {"type": "parallel", "dim": s.dim},
            "heads": {
                "image_embed": {"type": "projection", "dim": s.dim, "source": "image"},
                "text_embed": {"type": "projection", "dim": s.dim, "source": "text"},
            },
        },
        {
            "itc": {
                "type": "contrastive",
                "a": "image",
                "b": "text",
                "head_a": "image_embed",
                "head_b": "text_embed",
            }
        },
    )
    model, task, processors = build_omnifuse(run)
    pixels = images(s)
    text = text_batch(processors, [t[: s.text_length - 2] for t in captions(s)])
    batch = batch_of({"image": {"pixel_values": pixels}, "text": text}, captions(s))
    omni_step, _ = train_step(model, lambda: task.loss(model, batch)["loss"], autocast)
    omni = counted_side(model, omni_step, ("fusion",))  # a contrastive step never fuses

    tokenizer = processors["text"].tokenizer
    tower = {
        "hidden_size": s.dim,
        "intermediate_size": s.mlp_ratio * s.dim,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "hidden_act": "gelu",
        "attention_dropout": s.dropout,
        "dropout": s.dropout,
    }
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": tokenizer.vocab_size,
            "max_position_embeddings": s.text_length,
            "bos_token_id": tokenizer.cls_id,
            "eos_token_id": tokenizer.sep_id,  # CLIP pools at the text's closing token
            "pad_token_id": tokenizer.pad_id,
        },
        vision_config={**tower, "image_size": s.image_size, "patch_size": s.patch},
        projection_dim=s.dim,
    )
    hf = CLIPModel(config)
    ids, mask = text["input_ids"], text["attention_mask"].long()

    def hf_loss() -> Tensor:
        out = hf(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True)
        loss: Tensor = out.loss
        return loss

    hf_step, _ = train_step(hf, hf_loss, autocast)
    text_tokens = int(ids.shape[1])
    text_flops = s.layers * block_flops(text_tokens, s.dim, s.mlp_ratio)
    forward = s.batch * (vit_flops(s) + text_flops + 2 * 2 * s.dim * s.dim)
    return Pair(omni, counted_side(hf, hf_step), s.batch, 3 * forward)


# ------------------------------------------------------------------------------ captioner


@dataclass
class Captioners:
    """The two captioners of a shape: omnifuse (model + captioning task) and a transformers
    ``VisionEncoderDecoderModel`` (ViT + GPT-2 with cross-attention)."""

    model: MultimodalModel
    task: Any
    hf: Any
    vocab: int
    bos: int


def captioners(s: Shapes) -> Captioners:
    """ViT encoder + GPT-2-style decoder (learned positions, pre-norm, cross-attention, tied
    embeddings) of the same shapes on both sides."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTModel,
    )

    decoder = {
        "type": "caption_decoder",
        "source": "image",
        "dim": s.dim,
        "num_layers": s.layers,
        "num_heads": s.heads,
        "mlp_ratio": s.mlp_ratio,
        "dropout": s.dropout,
        "max_length": s.text_length,
    }
    run = omnifuse_run(
        {
            # The text tower only lends the decoder its tokenizer; it is never run.
            "encoders": {"image": vit(s), "text": text_encoder(s, layers=1, dim=8)},
            "fusion": {"type": "parallel", "dim": 8},
            "heads": {"caption": decoder},
        },
        {"caption": {"type": "captioning", "head": "caption", "target": "caption"}},
    )
    model, task, processors = build_omnifuse(run)
    tokenizer = processors["text"].tokenizer
    encoder = ViTConfig(
        hidden_size=s.dim,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=s.mlp_ratio * s.dim,
        hidden_act="gelu",
        hidden_dropout_prob=s.dropout,
        attention_probs_dropout_prob=s.dropout,
        image_size=s.image_size,
        patch_size=s.patch,
    )
    gpt2 = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=s.text_length,
        n_embd=s.dim,
        n_layer=s.layers,
        n_head=s.heads,
        n_inner=s.mlp_ratio * s.dim,
        activation_function="gelu",
        resid_pdrop=s.dropout,
        embd_pdrop=s.dropout,
        attn_pdrop=s.dropout,
        add_cross_attention=True,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
    )
    # No pooler on the ViT: a captioner never reads it (omnifuse's ViT has none either).
    hf = VisionEncoderDecoderModel(
        encoder=ViTModel(encoder, add_pooling_layer=False), decoder=GPT2LMHeadModel(gpt2)
    )
    hf.config.decoder_start_token_id = tokenizer.bos_id
    hf.config.pad_token_id = tokenizer.pad_id
    return Captioners(model, task, hf, tokenizer.vocab_size, tokenizer.bos_id)


def captioner_pair(s: Shapes) -> Pair:
    """Captioner training: teacher-forced next-token cross-entropy on ``text_length`` tokens."""
    pair = captioners(s)
    model, task, hf = pair.model, pair.task, pair.hf
    pixels, texts = images(s), captions(s)
    batch = batch_of({"image": {"pixel_values": pixels}}, texts)
    omni_step, _ = train_step(model, lambda: task.loss(model, batch)["loss"], False)
    omni = counted_side(model, omni_step, UNUSED_BY_CAPTIONER)
    # The same ids the captioning task makes (bytes + EOS); the HF collator's work is done here.
    labels, _ = task.tokenize(texts, pixels.device)

    def hf_loss() -> Tensor:
        loss: Tensor = hf(pixel_values=pixels, labels=labels).loss
        return loss

    hf_step, _ = train_step(hf, hf_loss, False)
    forward = s.batch * (vit_flops(s) + decoder_flops(s, pair.vocab, s.text_length))
    return Pair(omni, counted_side(hf, hf_step), s.batch, 3 * forward)


def _hf_generate_kwargs(new_tokens: int) -> dict[str, Any]:
    """Greedy, cached, exactly ``new_tokens`` tokens (no EOS): the HF side of both groups."""
    return {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "use_cache": True,
        "eos_token_id": None,
        "pad_token_id": 0,
    }


def _check_length(side: str, made: int, new_tokens: int) -> None:
    if made != new_tokens:
        raise RuntimeError(f"{side} made {made} tokens, expected {new_tokens}")


def _generation_flops(s: Shapes, vocab: int, new_tokens: int, encoder: bool) -> float:
    """Analytic FLOPs of decoding ``new_tokens`` per sample (plus the ViT pass if ``encoder``)."""
    decoder = sum(s.batch * decoder_flops(s, vocab, 1, past) for past in range(new_tokens))
    return decoder + (s.batch * vit_flops(s) if encoder else 0.0)


def generation_pair(s: Shapes, new_tokens: int) -> Pair:
    """Greedy caption generation of exactly ``new_tokens`` tokens per image, KV cache on both
    sides: omnifuse's ``CaptioningTask.generate`` (encode + ``heads.decoding.decode``) against
    transformers' ``generate``, the ViT encoder pass included on both sides. EOS is disabled on
    both sides so no row stops early."""
    pair = captioners(s)
    model, task, hf = pair.model.eval(), pair.task, pair.hf.eval()
    head: Any = model.heads["caption"]
    head.eos_id = -1  # an id argmax never returns: every row decodes new_tokens tokens
    pixels = images(s)
    inputs = {"image": {"pixel_values": pixels}}
    options = PredictOptions(decoding=DecodingOptions(max_length=new_tokens))

    @torch.no_grad()
    def omni_step() -> None:
        _check_length("omnifuse", task.generate(model, inputs, options).shape[1], new_tokens)

    @torch.no_grad()
    def hf_step() -> None:
        out = hf.generate(pixel_values=pixels, **_hf_generate_kwargs(new_tokens))
        _check_length("transformers", out.shape[1] - 1, new_tokens)  # BOS first

    used = used_params(model, UNUSED_BY_CAPTIONER)
    flops = _generation_flops(s, pair.vocab, new_tokens, encoder=True)
    omni_step()
    hf_step()
    hf_params = used_params(hf)
    return Pair(Side(omni_step, used), Side(hf_step, hf_params), s.batch * new_tokens, flops)


def decoding_pair(s: Shapes, new_tokens: int) -> Pair:
    """The decode loop alone: both decoders get the same precomputed image tokens ``[B, 65,
    dim]`` (omnifuse's ViT output) and decode exactly ``new_tokens`` greedy tokens with a KV
    cache: ``heads.decoding.decode(head, features, options)`` against transformers'
    ``generate(encoder_outputs=BaseModelOutput(last_hidden_state=...))``. Parameters counted
    are the decoders' (the ViT runs once, outside the timed step)."""
    from transformers.modeling_outputs import BaseModelOutput

    pair = captioners(s)
    model, hf = pair.model.eval(), pair.hf.eval()
    head: Any = model.heads["caption"]
    head.eos_id = -1  # as in generation_pair: every row decodes new_tokens tokens
    with torch.no_grad():
        features = model.features("caption", model.encode({"image": {"pixel_values": images(s)}}))
    encoded = BaseModelOutput(last_hidden_state=features.tokens)
    options = DecodingOptions(max_length=new_tokens)

    @torch.no_grad()
    def omni_step() -> None:
        _check_length("omnifuse", decode(head, features, options).tokens.shape[1], new_tokens)

    @torch.no_grad()
    def hf_step() -> None:
        out = hf.generate(encoder_outputs=encoded, **_hf_generate_kwargs(new_tokens))
        _check_length("transformers", out.shape[1] - 1, new_tokens)  # BOS first

    flops = _generation_flops(s, pair.vocab, new_tokens, encoder=False)
    omni_step()
    hf_step()
    return Pair(
        Side(omni_step, used_params(head)),
        Side(hf_step, used_params(hf.decoder)),
        s.batch * new_tokens,
        flops,
    )
