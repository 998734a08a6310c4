"""``instruction`` + ``causal_lm``: a local HF causal LM as the decoder, on tiny random Llama-
and Qwen2-style directories, built through the production config -> builder path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from lm_helpers import CONVERSATIONS, KINDS, lm_run_config, write_image
from omnifuse.config.loader import ConfigError, validate_config
from omnifuse.heads.causal_lm import CausalLMHead, compact
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.models import build_model, load, save
from omnifuse.tasks import PredictOptions, ScoreOptions, build_tasks
from omnifuse.tasks.instruction import InstructionTask, generate_settings
from omnifuse.types import IGNORE_INDEX, Batch

USER = {"role": "user", "content": "<image>describe the input"}


def build(lm_dir: Path, **task: Any) -> tuple[Any, Any, InstructionTask]:
    run = validate_config(lm_run_config(lm_dir, **task))
    model, processors = build_model(run.model)
    chat = build_tasks(run, model, processors)["chat"]
    assert isinstance(chat, InstructionTask)
    return model, processors, chat


def conversation(answer: str) -> list[dict[str, str]]:
    return [USER, {"role": "assistant", "content": answer}]


def image_batch(processors: Any, tmp_path: Path, convs: list[Any]) -> Batch:
    paths = [write_image(tmp_path / f"{n}.png", c) for n, c, _ in CONVERSATIONS[: len(convs)]]
    return {
        "inputs": {"image": processors["image"]([str(p) for p in paths])},
        "targets": {"messages": convs},
        "ids": [str(i) for i in range(len(convs))],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_only_assistant_tokens_are_labelled(kind: str, tiny_lm_dirs: dict[str, Path]) -> None:
    model, _, task = build(tiny_lm_dirs[kind])
    tok = model.heads["lm"].tokenizer
    turns = [
        *conversation("a red square"),
        {"role": "user", "content": "what colour is it"},
        {"role": "assistant", "content": "red"},
    ]
    ids, labels = task.chat.encode(task.conversation(turns))  # type: ignore[arg-type]
    rendered = task.chat.ids(task.chat.render(task.conversation(turns), False))  # type: ignore[arg-type]
    assert ids == rendered and len(labels) == len(ids)
    # The labelled spans are exactly the two answers, each closed by the end-of-turn token.
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    spans.append(current) if current else None
    # Qwen2's template ends a turn with "<|im_end|>\n": the newline is labelled too.
    decoded = [tok.decode(s, skip_special_tokens=True).strip() for s in spans]
    assert decoded == ["a red square", "red"]
    assert all(tok.eos_token_id in s for s in spans)
    prompt = task.chat.prompt(task.conversation(turns[:1]))  # type: ignore[arg-type]
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)


def test_plain_template_without_a_chat_template(tiny_lm_dirs: dict[str, Path]) -> None:
    _, _, task = build(tiny_lm_dirs["llama"], system="you are helpful")
    text = task.chat.render(task.conversation(conversation("a red square")), False)  # type: ignore[arg-type]
    assert text == (
        "<s>System: you are helpful\nUser: describe the input\nAssistant: a red square</s>\n"
    )


def test_compact_moves_valid_positions_together() -> None:
    embeds = torch.arange(6.0).view(1, 6, 1)
    mask = torch.tensor([[True, False, True, True, False, False]])
    labels = torch.tensor([[-100, -100, -100, 7, -100, -100]])
    right = compact(embeds, mask, labels, left=False)
    assert right.embeds.flatten()[:3].tolist() == [0.0, 2.0, 3.0]
    assert right.mask.tolist() == [[True, True, True, False, False, False]]
    assert right.labels is not None and right.labels.tolist()[0][2] == 7
    left = compact(embeds, mask, None, left=True)
    assert left.embeds.flatten()[3:].tolist() == [0.0, 2.0, 3.0]
    assert left.mask.tolist() == [[False, False, False, True, True, True]]


@pytest.mark.parametrize("kind", KINDS)
def test_loss_scores_answer_tokens_only(
    kind: str, tiny_lm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model, processors, task = build(tiny_lm_dirs[kind])
    head = model.heads["lm"]
    assert isinstance(head, CausalLMHead)
    convs = [conversation(a) for _, _, a in CONVERSATIONS]
    batch = image_batch(processors, tmp_path, convs)
    answers = sum(sum(label != IGNORE_INDEX for label in task.chat.encode(c)[1]) for c in convs)  # type: ignore[arg-type]
    seen: dict[str, int] = {}
    original = torch.nn.functional.cross_entropy

    def counting(logits: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen["targets"] = int(targets.numel())
        return original(logits, targets, **kw)

    torch.nn.functional.cross_entropy = counting  # type: ignore[assignment]
    try:
        out = task.loss(model, batch)
    finally:
        torch.nn.functional.cross_entropy = original
    assert seen["targets"] == answers and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert head.projector.parameters().__next__().grad is not None
    # 4 image patches + the ViT [CLS] + the fused [CLS]: 6 media positions per row.
    features = model.features("lm", model.encode(batch["inputs"]))
    assert features.tokens.shape[1] == 6


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_overfits_two_conversations_and_greedy_reproduces_them(
    kind: str, tiny_lm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model, processors, task = build(tiny_lm_dirs[kind])
    convs = [conversation(a) for _, _, a in CONVERSATIONS]
    batch = image_batch(processors, tmp_path, convs)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(80):
        loss = task.loss(model, batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    model.eval()
    print(f"{kind}: loss {losses[0]:.3f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.05 * losses[0], losses[::10]
    evaluated = task.evaluate_batch(model, batch, PredictOptions())
    assert [p["text"] for p in evaluated.predictions] == [a for _, _, a in CONVERSATIONS]
    scores = task.score(evaluated.predictions, evaluated.references, ScoreOptions())
    assert scores.metrics["exact_match"] == 1.0
    # The same prompt through predict (request text = the user turn); the image decides.
    request = {**batch["inputs"], "text": task.prompts(["<image>describe the input"] * 2)}
    predicted = task.predict(model, request, PredictOptions())
    assert [p["text"] for p in predicted] == [a for _, _, a in CONVERSATIONS]
    beam = task.predict(model, request, PredictOptions(DecodingOptions(strategy="beam")))
    assert [p["text"] for p in beam] == [a for _, _, a in CONVERSATIONS]


def test_generate_settings_map_decoding_options() -> None:
    greedy = generate_settings(DecodingOptions(max_length=5))
    assert greedy["do_sample"] is False and greedy["max_new_tokens"] == 5
    assert greedy["num_beams"] == 1 and greedy["use_cache"] is True
    nucleus = generate_settings(DecodingOptions(strategy="nucleus", top_p=0.5, temperature=0.7))
    assert nucleus["do_sample"] is True and nucleus["top_p"] == 0.5
    beam = generate_settings(DecodingOptions(strategy="beam", beam_size=3))
    assert beam["num_beams"] == 3 and beam["do_sample"] is False


def test_save_load_round_trip_keeps_the_lm_in_model_safetensors(
    tiny_lm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model, processors, task = build(tiny_lm_dirs["qwen2"])
    with torch.no_grad():  # move the weights away from the source directory's
        for p in model.heads["lm"].lm.parameters():
            p.add_(0.01 * torch.randn_like(p))
    run = validate_config(lm_run_config(tiny_lm_dirs["qwen2"]))
    out = save(tmp_path / "saved", model, processors, run)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "heads.lm.lm.model.layers.0.self_attn.q_proj.weight" in keys
    assert any(k.startswith("heads.lm.projector.") for k in keys)
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.bin"))
    loaded = load(out)
    batch = image_batch(processors, tmp_path, [conversation("a red square")])
    model.eval()
    for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    request = {**batch["inputs"], "text": task.prompts(["describe the input"])}
    again = build_tasks(loaded.config, loaded.model, loaded.processors)["chat"]
    assert again.predict(loaded.model, request, PredictOptions()) == task.predict(
        model, request, PredictOptions()
    )


def test_config_problems_name_the_field(tiny_lm_dirs: dict[str, Path]) -> None:
    data = lm_run_config(tiny_lm_dirs["llama"])
    data["model"]["encoders"]["text"] = {
        "type": "transformer",
        "dim": 32,
        "num_layers": 1,
        "num_heads": 2,
        "tokenizer": {"type": "byte", "max_length": 16},
    }
    data["tasks"]["chat"]["inputs"] = ["image", "text"]
    with pytest.raises(ConfigError, match="reads its text as the LM's prompt"):
        validate_config(data)
    data["tasks"]["chat"] = {"type": "instruction", "head": "nope"}
    with pytest.raises(ConfigError, match="nope"):
        validate_config(data)
    bad = lm_run_config(tiny_lm_dirs["llama"])
    bad["model"]["heads"]["lm"]["projector"] = "conv"
    with pytest.raises(ConfigError, match="projector"):
        validate_config(bad)


def test_pooled_linear_frozen_and_text_only(tiny_lm_dirs: dict[str, Path], tmp_path: Path) -> None:
    data = lm_run_config(tiny_lm_dirs["llama"], projector="linear", pooling="pooled")
    data["model"]["heads"]["lm"]["freeze_lm"] = True
    run = validate_config(data)
    model, processors = build_model(run.model)
    task = build_tasks(run, model, processors)["chat"]
    assert isinstance(task, InstructionTask)
    head = model.heads["lm"]
    assert isinstance(head, CausalLMHead) and isinstance(head.projector, torch.nn.Linear)
    assert not any(p.requires_grad for p in head.lm.parameters())
    batch = image_batch(processors, tmp_path, [conversation("a red square")])
    media, mask = head.prefix(model.features("lm", model.encode(batch["inputs"])))
    assert media.shape[:2] == (1, 1) and mask.tolist() == [[True]]
    task.loss(model, batch)["loss"].backward()
    assert head.projector.weight.grad is not None
    # No media at all (a chat before /image): zero media positions, the LM still answers.
    model.eval()
    reply = task.reply(model, {}, [USER], DecodingOptions(max_length=3))
    assert isinstance(reply, str)


@pytest.mark.parametrize(
    ("kind", "metric", "value"),
    [("vqa", "accuracy", 0.5), ("speech", "wer", 0.2), ("caption", "cider", None)],
)
def test_text_targets_and_scores_by_kind(
    kind: str, metric: str, value: float | None, tiny_lm_dirs: dict[str, Path]
) -> None:
    _, _, task = build(tiny_lm_dirs["llama"], kind=kind, target="answer", question_field="question")
    assert task.conversation("red", "what colour is it") == [
        {"role": "user", "content": "what colour is it"},
        {"role": "assistant", "content": "red"},
    ]
    assert task.conversation(["red", "crimson"])[1]["content"] == "red"  # type: ignore[index]
    assert task.conversation(None) is None
    preds = [{"text": "red"}, {"text": "a blue circle"}]
    # speech: one deleted word of five (corpus WER); vqa: one of two answers right
    refs = [{"text": "red"}, {"text": "a blue square circle" if kind == "speech" else "green"}]
    scores = task.score(preds, refs, ScoreOptions(caption_tokenizer="simple"))
    assert scores.samples == 2 and metric in scores.metrics
    if value is not None:
        assert scores.metrics[metric] == pytest.approx(value)
