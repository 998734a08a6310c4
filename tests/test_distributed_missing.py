"""A batch in which one of 2 CPU ranks (gloo) has no image trains under DDP and FSDP2 without a
hang, and both ranks end with identical parameters (from-scratch ViT and HF CLIP vision tower).

Every run is bounded by a join deadline: a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from missing_modality_worker import train_missing_image  # light: the ranks import only it
from omnifuse import create_model
from omnifuse.training.distributed import AbsentModalities
from rank_helpers import free_port, run_ranks

DEADLINE_S = 300.0
"""Wall-clock bound of one 2-rank run (seconds of work; generous for a loaded 2-core machine)."""


def train_ranks(strategy: str, image: str, out: Path) -> dict[str, object]:
    """Both ranks; the test fails (ranks killed) if they are not done by the deadline."""
    args = (free_port(), strategy, image, str(out))
    run_ranks(train_missing_image, args, deadline_s=DEADLINE_S)
    result: dict[str, object] = torch.load(out)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
@pytest.mark.parametrize("tower", ["vit", "hf"])
def test_rank_without_images_trains_in_step(
    strategy: str, tower: str, tiny_hf_towers: dict[str, Path], tmp_path: Path
) -> None:
    image = "vit" if tower == "vit" else str(tiny_hf_towers["clip"])
    result = train_ranks(strategy, image, tmp_path / "params.pt")
    initial = result["initial"]
    rank0, rank1 = result["ranks"]  # type: ignore[misc]
    assert isinstance(initial, dict)
    assert rank0.keys() == rank1.keys() == initial.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # bit-identical on both ranks
    # it trained, the image tower included (rank 0's images reach rank 1's copy)
    image_moved = [
        float((rank0[n] - initial[n]).abs().max()) for n in rank0 if n.startswith("encoders.image")
    ]
    assert image_moved and max(image_moved) > 1e-3


@pytest.mark.parametrize("fusion", ["concat", "parallel", "hybrid"])
def test_absent_rows_of_every_modality_encode_as_missing(fusion: str) -> None:
    """The blank rows a rank adds run through every tiny-preset tower, finite and fully masked,
    and the fusion output equals the one without them; outside a distributed run nothing is
    added."""
    fields = {"type": fusion, "dim": 32, "num_heads": 2}
    model, processors = create_model("tiny", [f"model.fusion={fields}"])
    model.eval()
    absent = AbsentModalities(processors)
    text = processors["text"](["a red circle", "blue"])
    assert absent({"text": text}).keys() == {"text"}  # one process: a no-op
    inputs = {"text": text}
    for modality in model.modalities:
        if modality != "text":
            inputs[modality] = absent.absent(modality, 2, torch.device("cpu"))
    encoded = model.encode(inputs)
    for modality, out in encoded.items():
        assert torch.isfinite(out.tokens).all(), modality
        if modality != "text":
            assert not out.mask.any() and not out.pooled.any(), modality
    fused = model.fusion(encoded)
    alone = model.fusion({"text": encoded["text"]})
    torch.testing.assert_close(fused.pooled, alone.pooled, atol=1e-5, rtol=0)
    fused.pooled.square().sum().backward()
    for modality in model.modalities:
        grads = [p.grad for p in model.encoder(modality).parameters() if p.grad is not None]
        if modality == "text":
            assert any(g.abs().sum() > 0 for g in grads)
        else:  # a blank tower takes part in autograd (so in DDP/FSDP reductions) with zeros
            assert grads and all(not g.any() for g in grads), modality
