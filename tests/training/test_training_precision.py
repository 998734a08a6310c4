"""``training.precision: bf16-mixed`` on CPU: close to fp32 in loss and gradients, fp32 master
weights in every checkpoint and in the saved model, and inference unaffected afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

import omnifuse
from omnifuse.config import RunConfig
from omnifuse.data import OmnifuseDataModule
from omnifuse.models import build_model
from omnifuse.tasks import build_tasks
from omnifuse.training import train

LOSS_RTOL = 1e-2
"""bf16 keeps 8 significant bits (~0.4 % per rounding); a tiny model's loss stays within 1 %."""
GRAD_COSINE = 0.999
"""All gradients as one vector point the same way as fp32's (cosine similarity)."""
GRAD_RTOL = 0.05
"""...and differ from fp32's by at most 5 % of its norm (measured: loss 0.2 %, cosine 0.99995,
1.1 % of the norm)."""

TASKS = {
    "shape": {"type": "classification", "head": "shape", "target": "label"},
    "itc": {
        "type": "contrastive",
        "a": "image",
        "b": "text",
        "head_a": "image_embed",
        "head_b": "text_embed",
    },
}


def _loss_and_grad(config: RunConfig, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of both tasks on the first training batch and the flattened gradient, under the
    precision plugin Lightning uses for ``precision=bf16-mixed`` on CPU (or plain fp32)."""
    torch.manual_seed(0)
    model, processors = build_model(config.model)
    tasks = build_tasks(config, model, processors)
    data = OmnifuseDataModule(config.data, processors=processors)
    data.setup("fit")
    torch.manual_seed(1)
    batch = next(iter(data.train_dataloader()))
    plugin = MixedPrecision("bf16-mixed", "cpu")
    with torch.autocast("cpu", enabled=False) if not bf16 else plugin.forward_context():
        loss = sum(task(model.train(), batch)["loss"] for task in tasks.values())
    assert isinstance(loss, torch.Tensor)
    loss.backward()  # type: ignore[no-untyped-call]
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    return loss.detach().float(), torch.cat(grads)


def test_bf16_loss_and_gradients_are_close_to_fp32(
    run_config: Callable[..., RunConfig],
) -> None:
    config = run_config("training.precision=bf16-mixed", tasks=TASKS)
    loss32, grad32 = _loss_and_grad(config, bf16=False)
    loss16, grad16 = _loss_and_grad(config, bf16=True)
    assert grad32.dtype == grad16.dtype == torch.float32  # gradients land on fp32 weights
    assert torch.isclose(loss16, loss32, rtol=LOSS_RTOL, atol=0.0), (loss16, loss32)
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine >= GRAD_COSINE, cosine
    assert (grad16 - grad32).norm() <= GRAD_RTOL * grad32.norm()
    assert not torch.equal(grad16, grad32)  # the autocast really ran in bf16


def test_bf16_run_keeps_fp32_weights_and_plain_inference(
    run_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    config = run_config("training.precision=bf16-mixed", "training.max_steps=3", tasks=TASKS)
    run_dir = tmp_path / "run"
    result = train(config, run_dir)
    assert result.steps == 3 and result.skipped == 0
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the run
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        checkpoint = torch.load(path, weights_only=True)
        dtypes = {t.dtype for t in checkpoint["state_dict"].values() if t.is_floating_point()}
        assert dtypes == {torch.float32}, path  # master weights, not bf16 copies
        for state in checkpoint["optimizer_states"][0]["state"].values():
            assert state["exp_avg"].dtype == torch.float32
    loaded = omnifuse.load(run_dir / "model")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    data = OmnifuseDataModule(loaded.config.data, processors=loaded.processors)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    model = loaded.model.eval()
    with torch.no_grad():
        logits = model(batch["inputs"]).heads["shape"]
        with torch.autocast("cpu", enabled=False):
            reference = model(batch["inputs"]).heads["shape"]
    assert logits.dtype == torch.float32
    assert torch.equal(logits, reference)  # inference runs in fp32, as for a fp32-trained model
