"""The uniform compute_metrics entry point and the package's import boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import omnifuse.metrics
from omnifuse.metrics import compute_metrics, list_metric_kinds, metric_options

KINDS = ["captioning", "classification", "retrieval", "speech", "video", "vqa"]


def test_every_kind_dispatches_to_flat_scalars() -> None:
    assert list_metric_kinds() == KINDS
    results = {
        "classification": compute_metrics("classification", [0, 1, 1], [0, 1, 0]),
        "speech": compute_metrics("speech", ["a b"], ["a c"]),
        "captioning": compute_metrics(
            "captioning",
            ["a dog", "a cat"],
            [["a dog"], ["a cat"]],
            tokenizer="simple",
            meteor=False,
        ),
        "retrieval": compute_metrics("retrieval", torch.eye(3), [[0], [1], [2]], ks=(1,)),
        "vqa": compute_metrics("vqa", ["Two"], ["2"]),
        "video": compute_metrics("video", torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 2, 3, 8, 8)),
    }
    assert results["classification"]["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert results["speech"]["wer"] == pytest.approx(0.5, abs=1e-9)
    assert results["captioning"]["rouge_l"] == pytest.approx(1.0, abs=1e-9)
    assert results["captioning"]["meteor"] is None
    assert results["retrieval"] == {
        "i2t/recall@1": 1.0, "i2t/median_rank": 1.0, "i2t/mrr": 1.0,
        "t2i/recall@1": 1.0, "t2i/median_rank": 1.0, "t2i/mrr": 1.0,
    }  # fmt: skip
    assert results["vqa"] == {"accuracy": 1.0, "soft_accuracy": None}
    assert results["video"]["psnr"] == 100.0
    for scalars in results.values():
        assert all(value is None or isinstance(value, int | float) for value in scalars.values())


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown metric kind 'caption'; valid kinds: \['captioning'"
    ):
        compute_metrics("caption", [], [])


def test_unknown_option_lists_the_valid_ones() -> None:
    assert "meteor" in metric_options("captioning")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['top_k'\] .*valid options: \['ks'\]"
    ):
        compute_metrics("retrieval", torch.eye(2), [[0], [1]], top_k=5)


def test_metrics_never_import_models_training_or_cli() -> None:
    forbidden = ("omnifuse.models", "omnifuse.training", "omnifuse.cli")
    package = Path(omnifuse.metrics.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            bad = [name for name in names if name.startswith(forbidden)]
            assert not bad, f"{source.name} imports {bad}"
