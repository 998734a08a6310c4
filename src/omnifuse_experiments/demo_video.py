"""The demo's video stage: text-to-video generation as its own small model.

``omnifuse_experiments/configs/demo-video.yaml`` (the tuned recipe of ``video-generation.yaml``,
docs/video_generation.md) is trained in two runs by ``omnifuse train``: the VQ video tokenizer
alone, then the autoregressive prior over its frozen codes (``training.init_from`` the tokenizer
run), conditioned on its own byte-level text encoder. The prior run is evaluated on the
validation prompts with the demo's judge; the result is the ``video_generation`` row of the demo
report. Inside the multi-task fine-tune the prior got a fifteenth of the steps at the
fine-tune's learning rate, over an 80-step tokenizer, and its clips were judged at chance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from omnifuse_experiments.configs import config_path

CONFIG = "demo-video"
"""The stage's run config (:func:`config_path`)."""
TOKENIZER_TASK = "video_tokenizer"
GENERATION_TASK = "video_generation"
"""The two tasks of the run config; each run trains one of them."""
TOKENIZER_PREFIX = "heads.generator.tokenizer"
"""The tokenizer's parameters, frozen while the prior trains (the codes must not move)."""


@dataclass(frozen=True)
class VideoPlan:
    """Sizes of the video stage.

    Attributes:
        tokenizer_steps: optimiser steps of the tokenizer run (reconstruction).
        prior_steps: optimiser steps of the prior run (next-code cross-entropy).
        eval_samples: validation prompts generated and judged (None: the split).
    """

    tokenizer_steps: int = 600
    prior_steps: int = 1000
    eval_samples: int | None = None


FULL = VideoPlan(tokenizer_steps=300, prior_steps=600)
"""The demo's sizes, set by its 1,500 CPU-second budget: a prior step costs 0.36 CPU-s on a quiet
machine (150 steps, one thread, 2026-12-04), so the stage takes about 320 CPU-s. Judged 0.376
(300 tokenizer + 600 prior steps) against 0.513 for 600 + 1,000, which would cost about 170 more
(docs/video_generation.md)."""
QUICK = VideoPlan(tokenizer_steps=4, prior_steps=4, eval_samples=8)


def only_task(name: str) -> str:
    """Override keeping only task ``name`` of the run config (``tasks={name: {...}}``): its
    entry is read from the config, so the two runs cannot drift from it."""
    entry = yaml.safe_load(config_path(CONFIG).read_text())["tasks"][name]
    return f"tasks={{{name}: {json.dumps(entry)}}}"


def tokenizer_overrides(plan: VideoPlan) -> list[str]:
    """The tokenizer run: reconstruction only, ``plan.tokenizer_steps`` steps."""
    return [only_task(TOKENIZER_TASK), f"training.max_steps={plan.tokenizer_steps}"]


def prior_overrides(plan: VideoPlan, tokenizer_run: Path) -> list[str]:
    """The prior run: starts from ``tokenizer_run``'s weights with the tokenizer frozen."""
    return [
        only_task(GENERATION_TASK),
        f"training.max_steps={plan.prior_steps}",
        f"training.init_from={tokenizer_run}",
        f"training.freeze=[{TOKENIZER_PREFIX}]",
    ]


def evaluate_generation(
    run_dir: Path, judge: Path, out: Path, plan: VideoPlan
) -> tuple[dict[str, Any], list[Path]]:
    """Generate a clip per validation prompt and judge it (``omnifuse eval RUN --judge``).

    Returns:
        The ``video_generation`` entry of the evaluation's ``tasks`` (attribute accuracy, the
        judge's real-clip ceiling, Fréchet distance, reconstruction PSNR) and the plots.
    """
    from omnifuse.evaluation import EvalOptions, evaluate

    options = EvalOptions(max_samples=plan.eval_samples)
    report: dict[str, Any] = evaluate(run_dir, split="val", out=out, options=options, judge=judge)
    plots = [Path(p) for p in report["files"]["plots"]]
    return report["tasks"][GENERATION_TASK], plots


def eval_command(run_dir: Path, judge: Path, out: Path, plan: VideoPlan) -> str:
    """The CLI command of :func:`evaluate_generation`."""
    limit = "" if plan.eval_samples is None else f" --max-samples {plan.eval_samples}"
    return f"omnifuse eval {run_dir} --split val --out {out} --judge {judge}{limit}"


__all__ = [
    "CONFIG",
    "FULL",
    "QUICK",
    "VideoPlan",
    "eval_command",
    "evaluate_generation",
    "only_task",
    "prior_overrides",
    "tokenizer_overrides",
]
