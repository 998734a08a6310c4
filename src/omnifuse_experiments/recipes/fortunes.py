"""Recipe ``fortunes``: fortune-category text classification with the pretrained MiniLM.

Baselines, on the same splits: TF-IDF + logistic regression, and logistic regression on frozen
mean-pooled MiniLM embeddings. Ours fine-tunes the MiniLM tower with omnifuse, starting from the
second baseline (LP-FT, Kumar et al., ICLR 2022: the classification head begins as the fitted
linear probe, so fine-tuning starts from a good head instead of distorting the pretrained
features to fit a random one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from omnifuse.config import RunConfig
from omnifuse.modalities.base import Processor
from omnifuse.models import Processors, build_model, save
from omnifuse.models.multimodal import MultimodalModel
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
from omnifuse_experiments.recipes.baselines import (
    LogisticRegression,
    TfidfVectorizer,
    evaluate_classifier,
    select_logistic_regression,
)

NAME = "fortunes"
SPLITS = ("train", "val", "test")
QUICK = ["training.max_steps=2", "model.encoders.text.max_length=32", "data.batch_size=8"]


@torch.no_grad()
def encode_texts(
    model: MultimodalModel, processor: Processor[Any], texts: Sequence[str], batch_size: int = 64
) -> Tensor:
    """``[N, D]`` pooled text-encoder outputs (eval mode). Texts are batched by length, so
    short ones are not padded to the longest of the corpus."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), model.encoder("text").dim)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = {"text": processor([texts[i] for i in index])}
        out[index] = model.encode(batch)["text"].pooled.float()
    return out


def _linear_probe_model(
    pretrained: tuple[MultimodalModel, Processors],
    config: RunConfig,
    probe: LogisticRegression,
    directory: Path,
) -> Path:
    """Save the model with the probe's weights in its classification head's last layer."""
    model, processors = pretrained
    head = [m for m in model.heads["classify"].modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.copy_(probe.weight)
        head.bias.copy_(probe.bias)
    return save(directory, model, processors, config)


def run(
    out_dir: Path,
    quick: bool = False,
    results_file: Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Make the data, run both baselines and ours, write ``results.json`` (+ its section
    of ``results_file``, default and for a quick run ``out_dir/results.md``).

    ``overrides`` (dotted, e.g. ``training.max_steps=2000``) change ours' run config.
    """
    watch = Stopwatch()
    with watch.step("data"):
        data = ensure_data(NAME, out_dir / "data", size=120 if quick else None)
    base = [*data_overrides(data), f"model.encoders.text.path={minilm_path()}"]
    config = recipe_config(NAME, [*base, *(QUICK if quick else []), *overrides])
    classes = card_classes(data)
    rows = {split: read_rows(data / f"{split}.jsonl") for split in SPLITS}
    texts = {split: [row["text"] for row in rows[split]] for split in SPLITS}
    labels = {split: torch.tensor(class_index(rows[split], "label", classes)) for split in SPLITS}
    results: dict[str, Any] = {"classes": classes, "samples": {s: len(rows[s]) for s in SPLITS}}
    with watch.step("baseline: TF-IDF + logistic regression"):
        results["tfidf_logreg"] = _tfidf_baseline(texts, labels, len(classes))
    with watch.step("baseline: frozen MiniLM + logistic regression"):
        model, processors = build_model(config.model)
        features = {s: encode_texts(model, processors["text"], texts[s]) for s in SPLITS}
        probe = select_logistic_regression(
            (features["train"], labels["train"]), (features["val"], labels["val"]), len(classes)
        )
        results["frozen_minilm_logreg"] = {
            "l2": probe.l2,
            **evaluate_classifier(probe, features["test"], labels["test"], len(classes)),
        }
    with watch.step("ours: fine-tune MiniLM (omnifuse train)"):
        init = _linear_probe_model((model, processors), config, probe, out_dir / "linear-probe")
        tuned = recipe_config(
            NAME, [*base, *(QUICK if quick else []), *overrides, f"training.init_from={init}"]
        )
        model_dir = train_fresh(tuned, out_dir / "ours")
    with watch.step("ours: evaluate on test (omnifuse eval)"):
        results["ours"] = _evaluate_ours(out_dir / "ours")
    results["chance"] = _chance(labels["train"], labels["test"], len(classes))
    results["timing"] = watch.steps
    results["model_dir"] = str(model_dir)
    results["steps"] = tuned.training.max_steps
    # Quick numbers mean nothing, so they never go into a shared results file.
    md = out_dir / "results.md" if quick or results_file is None else results_file
    return finish(NAME, out_dir, results, lambda: section(results), md)


def _tfidf_baseline(
    texts: dict[str, list[str]], labels: dict[str, Tensor], num_classes: int
) -> dict[str, float]:
    vectorizer = TfidfVectorizer().fit(texts["train"])
    x = {split: vectorizer.transform(texts[split]) for split in SPLITS}
    model = select_logistic_regression(
        (x["train"], labels["train"]), (x["val"], labels["val"]), num_classes
    )
    return {
        "vocabulary": len(vectorizer.vocabulary),
        "l2": model.l2,
        **evaluate_classifier(model, x["test"], labels["test"], num_classes),
    }


def _evaluate_ours(run_dir: Path) -> dict[str, float]:
    from omnifuse.evaluation import EvalOptions, evaluate

    report = evaluate(run_dir, split="test", options=EvalOptions(plots=False))
    metrics = report["tasks"]["category"]["metrics"]
    return {"accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"])}


def _chance(train: Tensor, test: Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy of always predicting the most frequent training class, and of guessing."""
    majority = int(torch.bincount(train).argmax())
    return {
        "majority_accuracy": float((test == majority).double().mean()),
        "uniform_accuracy": 1.0 / num_classes,
    }


def section(results: dict[str, Any]) -> str:
    """The docs/results.md section of ``results`` (what ``run`` returned)."""
    methods = (
        ("TF-IDF (1-2 grams) + logistic regression", "tfidf_logreg"),
        ("frozen MiniLM (mean-pooled) + logistic regression", "frozen_minilm_logreg"),
        ("**ours**: MiniLM fine-tuned in omnifuse (LP-FT, top 3 layers)", "ours"),
    )
    rows: list[Row] = [
        (label, metric, results[key][metric])
        for label, key in methods
        for metric in ("accuracy", "macro_f1")
    ]
    rows.append(("chance: majority class", "accuracy", results["chance"]["majority_accuracy"]))
    n = results["samples"]
    return "\n\n".join(
        [
            "## Recipe: fortunes (text classification)",
            f"`omnifuse recipe fortunes`: {len(results['classes'])} categories, "
            f"train/val/test {n['train']}/{n['val']}/{n['test']} texts; every number is on the "
            "test split; MiniLM reads at most 128 tokens in every method. Logistic-regression "
            "strengths are chosen on val. Ours: the head starts as the frozen-MiniLM probe, "
            f"then {results['steps']} steps of `omnifuse train` (batch 16) tune it with the top "
            "3 of MiniLM's 6 layers (`omnifuse_experiments/configs/recipe-fortunes.yaml`); "
            "scored by "
            "`omnifuse eval`.",
            markdown_table(rows),
            "Wall times (2 shared cores; the load average shows how busy they were):\n\n"
            + timing_lines(results["timing"]),
        ]
    )
