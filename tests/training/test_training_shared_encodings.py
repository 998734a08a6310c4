"""Tasks of a step share encoder passes: the same losses and gradients as separate passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from omnifuse.config import RunConfig
from omnifuse.models.builder import build_model
from omnifuse.tasks import build_tasks
from omnifuse.training.data import StepBatch, build_streams, build_train_loader, task_batch
from omnifuse.training.module import OmnifuseModule

PAIR = {"a": "image", "b": "text", "head_a": "image_embed", "head_b": "text_embed"}
TASKS: dict[str, Any] = {
    "shape": {"type": "classification", "head": "shape", "target": "label"},
    "itc": {"type": "contrastive", **PAIR},
    "itm": {"type": "matching", "head": "itm", **PAIR},
    "mlm": {"type": "mlm", "head": "mlm"},
    "mim": {"type": "masked_modeling", "modality": "image", "head": "recon"},
    "caption": {
        "type": "captioning",
        "head": "captioner",
        "target": "caption",
        "inputs": ["image"],
    },
}
HEADS = [
    "model.heads.itm={type: classification, num_classes: 2}",
    "model.heads.mlm={type: mlm, source: text}",
    "model.heads.recon={type: reconstruction, source: image}",
    "model.heads.captioner={type: caption_decoder, dim: 32, num_layers: 1, num_heads: 2, "
    "max_length: 12}",
    "data.fields=[label, topic, caption]",
    "training.multitask.tasks_per_step=all",
    "training.multitask.weighting=uncertainty",
]


@pytest.fixture
def step(run_config: Callable[..., RunConfig]) -> tuple[OmnifuseModule, StepBatch]:
    """An eval-mode module (no dropout: one pass or several give the same numbers) of six
    tasks, and a training step's batch."""
    config = run_config(*HEADS, tasks=TASKS)
    torch.manual_seed(0)
    model, processors = build_model(config.model)
    tasks = build_tasks(config, model, processors)
    module = OmnifuseModule(model, tasks, config.training).eval()
    streams = build_streams(config, list(tasks), processors)
    batch: StepBatch = next(iter(build_train_loader(config, streams, length=1)))
    return module, batch


def count_calls(modules: nn.ModuleDict) -> dict[str, int]:
    """Live forward-call counts of each module of ``modules``."""
    calls = dict.fromkeys(modules, 0)
    for name, module in modules.items():

        def hook(*_: Any, name: str = name) -> None:
            calls[name] += 1

        module.register_forward_hook(hook)
    return calls


def losses_and_grads(
    module: OmnifuseModule, terms: dict[str, Tensor]
) -> tuple[dict[str, float], list[Tensor]]:
    params = [p for _, p in module.named_training_parameters()]
    grads = torch.autograd.grad(torch.stack(list(terms.values())).sum(), params, allow_unused=True)
    zeros = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
    return {t: float(v.detach()) for t, v in terms.items()}, zeros


def test_shared_encoder_passes_equal_separate_ones(step: tuple[OmnifuseModule, StepBatch]) -> None:
    module, batch = step
    calls = count_calls(module.model.encoders)
    torch.manual_seed(1)  # the masking tasks draw their masks from it, in the same order
    shared = losses_and_grads(module, module.forward_tasks(batch, batch["tasks"])[1])
    shared_calls = dict(calls)
    torch.manual_seed(1)
    outputs = {t: module.tasks[t](module.model, task_batch(batch, t)) for t in batch["tasks"]}
    separate = losses_and_grads(
        module, module.loss_weighting({t: o["loss"] for t, o in outputs.items()})
    )
    separate_calls = {m: calls[m] - shared_calls[m] for m in calls}
    # image: the plain batch once + the masked one (mim); text: plain once + masked (mlm)
    assert shared_calls == {"image": 2, "text": 2}
    assert separate_calls == {"image": 5, "text": 4}
    assert shared[0] == pytest.approx(separate[0], abs=1e-5)
    for a, b in zip(shared[1], separate[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_cache_lives_for_one_block(step: tuple[OmnifuseModule, StepBatch]) -> None:
    module, batch = step
    model, inputs = module.model, task_batch(batch, "shape")["inputs"]
    with model.shared_encodings() as cache:
        first = model.encode(inputs)
        with model.shared_encodings() as inner:  # nested: the same cache
            assert inner is cache and model.encode(inputs)["image"] is first["image"]
        masked = {
            **inputs,
            "text": {**inputs["text"], "input_ids": inputs["text"]["input_ids"] + 1},
        }
        assert model.encode(masked)["text"] is not first["text"]  # a new tensor: encoded afresh
        assert model.encode(masked)["image"] is first["image"]
    assert (cache.hits, cache.misses) == (5, 3)  # image+text; 2 nested; masked: 1 + 2
    assert model.encode(inputs)["image"] is not first["image"]  # outside a block: no cache
