"""Helpers of the export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from torch.overrides import TorchFunctionMode

import omnifuse
from omnifuse.config import load_config

VIDEO_HEAD = (
    "model.heads={generator: {type: video_generator, source: text, tokenizer: {stage_dims: "
    "[8, 16], temporal_downsample: 2, codebook_size: 16, code_dim: 8, num_res_blocks: 1}, "
    "prior: {dim: 32, num_layers: 1, num_heads: 2}, sampling: {guidance: 2.0}}}"
)


class NoTorch(TorchFunctionMode):
    """Fails on any torch function or tensor method called inside the block: what runs there
    (the ONNX predictor's graph execution and post-processing) must not need torch."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        raise AssertionError(f"torch was called: {func}")


def build_video_run(root: Path) -> Path:
    """The tiny preset with a small video generator head (guidance 2) and a video_generation
    task, untrained, saved as ``root/run``; returns the run dir."""
    overrides = [VIDEO_HEAD, "tasks={gen: {type: video_generation, head: generator}}"]
    run = load_config("tiny", overrides)
    model, processors = omnifuse.create_model("tiny", overrides)
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(run.model_dump(mode="json"), sort_keys=False)
    )
    omnifuse.save(run_dir / "model", model, processors, run)
    return run_dir
