"""``contrastive`` task: separate encoding, learnable temperature, accuracies, overfitting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from task_helpers import build, check_contract, make_batch, overfit

from omnifuse.tasks import ContrastiveTask, PredictOptions, ScoreOptions
from omnifuse.tasks.base import index_encoded


def test_contract_and_metric_names(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    out = tasks["contrastive"](model, make_batch(processors, media))
    check_contract(out)
    assert set(out) == {"loss", "image_to_text_accuracy", "text_to_image_accuracy", "logit_scale"}
    assert float(out["logit_scale"]) == torch.tensor(1 / 0.07).item()


def test_temperature_is_task_state_and_learns(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    task = tasks["contrastive"]
    assert isinstance(task, ContrastiveTask)
    names = [n for n, _ in task.named_parameters()]
    assert names == ["objective.logit_scale.log_scale"]
    task(model, make_batch(processors, media))["loss"].backward()
    assert task.objective.logit_scale.log_scale.grad is not None


def test_checkpoints_from_before_the_objective_rename_load() -> None:
    _, _, tasks = build(["contrastive"])
    task = tasks["contrastive"]
    old = {"loss.logit_scale.log_scale": torch.tensor(1.5)}  # the key before it was `objective`
    task.load_state_dict(old)
    assert float(task.state_dict()["objective.logit_scale.log_scale"]) == 1.5


def test_modalities_are_encoded_without_fusion(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    tasks["contrastive"](model, make_batch(processors, media))["loss"].backward()
    assert all(p.grad is None for p in model.fusion.parameters())
    assert all(p.grad is not None for p in model.heads["image_embed"].parameters())


def test_samples_missing_a_modality_are_dropped(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    model.eval()
    batch = make_batch(processors, media)
    full = tasks["contrastive"](model, make_batch(processors, media, size=3))
    batch["inputs"]["image"]["present"] = torch.tensor([True, True, True, False])
    partial = tasks["contrastive"](model, batch)
    torch.testing.assert_close(partial["loss"], full["loss"])


def test_overfits_a_fixed_batch(media: dict[str, Callable[..., Path]]) -> None:
    model, processors, tasks = build(["contrastive"])
    batch = make_batch(processors, media)
    first, last = overfit(tasks["contrastive"], model, batch, steps=40, lr=3e-3)
    assert last < first / 10
    model.eval()
    out = tasks["contrastive"](model, batch)
    assert float(out["image_to_text_accuracy"]) == float(out["text_to_image_accuracy"]) == 1.0


RERANK = ["tasks.contrastive.rerank_head=itm", "tasks.contrastive.rerank_top_k=2"]


@torch.no_grad()
def test_rerank_rescores_each_querys_top_candidates_by_the_matching_head(
    media: dict[str, Callable[..., Path]],
) -> None:
    model, processors, tasks = build(["contrastive"], RERANK)
    model.eval()
    task = tasks["contrastive"]
    batch = make_batch(processors, media)
    out = task.evaluate_batch(model, batch, PredictOptions())
    revised = task.revise(model, out.predictions, ScoreOptions(candidates=4))
    assert all("encoded" not in p and "reranked" in p for p in revised)

    # Reference: every (image i, text j) pair fused directly from the batch's encoder outputs.
    encoded = model.encode({m: batch["inputs"][m] for m in ("image", "text")})
    rows = torch.arange(4)
    images, texts = rows.repeat_interleave(4), rows.repeat(4)
    logits = model.heads["itm"](
        model.fusion(
            {
                "image": index_encoded(encoded["image"], images),
                "text": index_encoded(encoded["text"], texts),
            }
        )
    )
    matched = (logits[:, 1] - logits[:, 0]).double().reshape(4, 4)  # [image, text]
    emb = torch.stack([p["embeddings"]["image"] for p in revised])
    similarity = emb @ torch.stack([p["embeddings"]["text"] for p in revised]).T
    for i, prediction in enumerate(revised):
        scores = prediction["reranked"]["a_to_b"]
        top = similarity[i].topk(2).indices
        # The top 2 carry the matching logit (lifted by one constant), above every other text.
        lifted = scores[top] - matched[i, top]
        torch.testing.assert_close(lifted, lifted[:1].expand(2), atol=1e-5, rtol=0)
        others = [j for j in range(4) if j not in top.tolist()]
        assert scores[top].min() > scores[others].max()
        top_images = similarity[:, i].topk(2).indices
        lifted = prediction["reranked"]["b_to_a"][top_images] - matched[top_images, i]
        torch.testing.assert_close(lifted, lifted[:1].expand(2), atol=1e-5, rtol=0)

    metrics = task.score(revised, [True] * 4, ScoreOptions(candidates=4)).metrics
    assert 0.0 <= metrics["image_to_text/recall@1"] <= 1.0
    assert "image_to_text/recall@1_before_rerank" in metrics


def test_without_rerank_predictions_carry_no_encoder_outputs(
    media: dict[str, Callable[..., Path]],
) -> None:
    model, processors, tasks = build(["contrastive"])
    model.eval()
    task = tasks["contrastive"]
    with torch.no_grad():
        out = task.evaluate_batch(model, make_batch(processors, media), PredictOptions())
    assert task.revise(model, out.predictions, ScoreOptions()) == out.predictions
    metrics = task.score(out.predictions, out.references, ScoreOptions()).metrics
    assert "image_to_text/recall@1" in metrics
    assert not any(key.endswith("_before_rerank") for key in metrics)
