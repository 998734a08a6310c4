"""Recipe ``emoji``: image <-> name retrieval and group classification on emoji unseen in
training (the dataset splits by emoji, skin tones together), against chance.

Ours: a ViT trained from scratch on the glyphs, contrastive against the frozen pretrained MiniLM
reading the CLDR names, plus a 9-way group head on the image. The names of test emoji are new
sentences to the model; only MiniLM's pretraining relates them to the names it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from omnifuse_experiments.recipes._common import (
    Row,
    Stopwatch,
    card_classes,
    class_index,
    data_overrides,
    ensure_data,
    finish,
    markdown_table,
    minilm_path,
    read_rows,
    recipe_config,
    timing_lines,
    train_fresh,
)

NAME = "emoji"
KS = (1, 5, 10)
DIRECTIONS = ("image_to_text", "text_to_image")
RETRIEVAL_KEYS = tuple(f"{d}/recall@{k}" for d in DIRECTIONS for k in KS)
QUICK = [
    "training.max_steps=2",
    "data.batch_size=8",
    "model.encoders.image.num_layers=1",
    "model.encoders.image.dim=32",
    "model.encoders.image.num_heads=2",
]


def run(
    out_dir: Path,
    quick: bool = False,
    results_file: Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Make the data, train and evaluate ours on the test emoji, write ``results.json`` (+ its
    section of ``results_file``, default and for a quick run ``out_dir/results.md``).

    ``overrides`` (dotted, e.g. ``training.max_steps=2000``) change ours' run config.
    """
    watch = Stopwatch()
    with watch.step("data"):
        data = ensure_data(NAME, out_dir / "data", size=90 if quick else None, workers=1)
    base = [*data_overrides(data), f"model.encoders.text.path={minilm_path()}"]
    config = recipe_config(NAME, [*base, *(QUICK if quick else []), *overrides])
    with watch.step("ours: train (omnifuse train)"):
        train_fresh(config, out_dir / "ours")
    test = read_rows(data / "test.jsonl")
    with watch.step("ours: evaluate on test (omnifuse eval)"):
        tasks = _evaluate(out_dir / "ours", candidates=len(test))
    classes = card_classes(data)
    results: dict[str, Any] = {
        "samples": {split: len(read_rows(data / f"{split}.jsonl")) for split in ("train", "val")},
        "retrieval": {
            f"{d}/recall@{k}": tasks["itc"][f"{d}/recall@{k}"] for d in DIRECTIONS for k in KS
        },
        "group": {key: tasks["group"][key] for key in ("accuracy", "macro_f1")},
        "chance": _chance(read_rows(data / "train.jsonl"), test, classes),
        "steps": config.training.max_steps,
        "timing": watch.steps,
    }
    results["samples"]["test"] = len(test)
    # Quick numbers mean nothing, so they never go into a shared results file.
    md = out_dir / "results.md" if quick or results_file is None else results_file
    return finish(NAME, out_dir, results, lambda: section(results), md)


def _evaluate(run_dir: Path, candidates: int) -> dict[str, dict[str, Any]]:
    """Per task of the run, its test metrics (retrieval among all ``candidates`` test pairs)."""
    from omnifuse.evaluation import EvalOptions, evaluate

    report = evaluate(
        run_dir, split="test", options=EvalOptions(candidates=candidates, plots=False)
    )
    return {name: task["metrics"] for name, task in report["tasks"].items()}


def _chance(
    train: list[dict[str, Any]], test: list[dict[str, Any]], classes: list[str]
) -> dict[str, float]:
    """Recall@K of a random ranking (K / N) and the accuracy of the majority training group."""
    n = len(test)
    majority = int(torch.bincount(torch.tensor(class_index(train, "label", classes))).argmax())
    hits = sum(label == majority for label in class_index(test, "label", classes))
    return {
        **{f"recall@{k}": min(1.0, k / n) for k in KS},
        "group_majority_accuracy": hits / n,
        "group_uniform_accuracy": 1.0 / len(classes),
    }


def section(results: dict[str, Any]) -> str:
    """The docs/results.md section of ``results`` (what ``run`` returned)."""
    chance = results["chance"]
    rows: list[Row] = []
    for direction in DIRECTIONS:
        label = direction.replace("_to_", " → ")
        for k in KS:
            key = f"recall@{k}"
            rows.append((f"ours: {label}", f"R@{k}", results["retrieval"][f"{direction}/{key}"]))
    rows += [("chance (random ranking)", f"R@{k}", chance[f"recall@{k}"]) for k in KS]
    rows += [
        ("ours: group from the image", "accuracy", results["group"]["accuracy"]),
        ("ours: group from the image", "macro_f1", results["group"]["macro_f1"]),
        ("chance: majority group", "accuracy", chance["group_majority_accuracy"]),
        ("chance: uniform over 9 groups", "accuracy", chance["group_uniform_accuracy"]),
    ]
    n = results["samples"]
    return "\n\n".join(
        [
            "## Recipe: emoji (retrieval and group classification on unseen emoji)",
            f"`omnifuse recipe emoji`: train/val/test {n['train']}/{n['val']}/{n['test']} emoji; "
            "no test emoji (in any skin tone) is seen in training. Retrieval ranks all "
            f"{n['test']} test pairs. Ours: {results['steps']} steps of `omnifuse train` "
            "(`omnifuse_experiments/configs/recipe-emoji.yaml`: ViT from scratch + frozen "
            "MiniLM, contrastive, "
            "plus a group head), scored by `omnifuse eval`.",
            markdown_table(rows),
            "Wall times (2 shared cores; the load average shows how busy they were):\n\n"
            + timing_lines(results["timing"]),
        ]
    )
