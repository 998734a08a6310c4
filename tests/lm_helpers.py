"""Tiny random Llama- and Qwen2-style causal LMs saved locally (``save_pretrained``), with
word-level tokenizers: the Qwen2 one has a ChatML chat template, the Llama one none (so the
plain template is used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

WORDS = [
    "system",
    "user",
    "assistant",
    "System",
    "User",
    "Assistant",
    ":",
    "describe",
    "the",
    "input",
    "what",
    "colour",
    "is",
    "shape",
    "a",
    "an",
    "red",
    "blue",
    "green",
    "square",
    "circle",
    "triangle",
    "star",
    "yes",
    "no",
    "it",
    "picture",
    "of",
    "say",
    "hello",
    "hi",
    "there",
    "you",
    "are",
    "helpful",
    "model",
    "answer",
    "question",
]
KINDS = ("llama", "qwen2")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(kind: str) -> Any:
    """Llama: word-level with BOS/EOS (AutoTokenizer keeps it as saved). Qwen2: byte-level BPE
    trained on :data:`WORDS` (AutoTokenizer rebuilds a ``Qwen2Tokenizer`` from its vocabulary
    and merges, which reproduces byte-level BPE only)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "llama":
        specials = ["<s>", "</s>", "<unk>"]
        vocab = {tok: i for i, tok in enumerate([*specials, *WORDS])}
        core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(
            tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
        )
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator([" ".join(WORDS) + "\n"] * 10 + [" " + w for w in WORDS], trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tok.chat_template = CHATML
    return tok


def save_tiny_lm(kind: str, out: Path, seed: int = 0) -> Path:
    """A random 2-layer causal LM of ``kind`` (``llama`` or ``qwen2``) and its tokenizer."""
    import transformers as tf

    tokenizer = _tokenizer(kind)
    dims: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if kind == "llama":
        config: Any = tf.LlamaConfig(**dims, bos_token_id=tokenizer.bos_token_id)
        model_class: Any = tf.LlamaForCausalLM
    else:
        config = tf.Qwen2Config(**dims, tie_word_embeddings=True)
        model_class = tf.Qwen2ForCausalLM
    torch.manual_seed(seed)
    model_class(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def lm_run_config(
    lm_dir: Path, projector: str = "mlp", pooling: str = "tokens", **task: Any
) -> dict[str, Any]:
    """A raw run config: a tiny ViT image encoder, concat fusion and a ``causal_lm`` head."""
    return {
        "model": {
            "encoders": {
                "image": {
                    "type": "vit",
                    "dim": 32,
                    "num_layers": 1,
                    "num_heads": 2,
                    "patch_size": 16,
                    "processor": {"image_size": 32},
                }
            },
            "fusion": {"type": "concat", "dim": 32, "num_layers": 1, "num_heads": 2},
            "heads": {
                "lm": {
                    "type": "causal_lm",
                    "path": str(lm_dir),
                    "projector": projector,
                    "pooling": pooling,
                    "max_new_tokens": 12,
                }
            },
        },
        "tasks": {"chat": {"type": "instruction", "head": "lm", **task}},
    }


def write_image(path: Path, colour: tuple[int, int, int], seed: int = 0) -> Path:
    """A 32x32 PNG: a square of ``colour`` on weak noise."""
    from PIL import Image

    gen = np.random.default_rng(seed)
    pixels = gen.integers(0, 40, size=(32, 32, 3), dtype=np.uint8)
    pixels[6:26, 6:26] = colour
    Image.fromarray(pixels).save(path)
    return path


CONVERSATIONS = [
    ("red", (220, 30, 30), "a red square"),
    ("blue", (30, 30, 220), "a blue circle"),
]


def write_conversations(root: Path) -> Path:
    """Two one-image conversations in the LLaMA-Factory format (``conversations.jsonl``)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, colour, answer in CONVERSATIONS:
        write_image(root / f"{name}.png", colour)
        row = {
            "id": name,
            "messages": [
                {"role": "user", "content": "<image>describe the input"},
                {"role": "assistant", "content": answer},
            ],
            "images": [f"{name}.png"],
        }
        lines.append(json.dumps(row))
    path = root / "conversations.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
