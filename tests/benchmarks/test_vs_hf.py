"""benchmarks/vs_hf.py in its quick mode: every group runs, both sides have the same parameter
count, the table has its structure and the analytic FLOPs agree with the counted ones. Speed is
never asserted (the cores are shared)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks._report import REPORT  # noqa: E402

from benchmarks import vs_hf  # noqa: E402 - needs the repository root on sys.path

GROUPS = [
    "CLIP contrastive training, fp32",
    "CLIP contrastive training, bf16 autocast",
    "ViT+GPT-2 captioner training",
    "caption generation, batch 1, 8 tokens (ViT encoder included)",
    "caption generation, decode only, batch 1, 8 tokens (same encoder output)",
    "caption generation, batch 2, 8 tokens (ViT encoder included)",
    "caption generation, decode only, batch 2, 8 tokens (same encoder output)",
    "ASR training, 3-s clips, batch 2 (HF: 30-s window)",
    "ASR decoding, 3-s clips, batch 2, 8 tokens (HF: 30-s window)",
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[vs_hf.Row], Path]:
    before = REPORT.read_text()
    out = tmp_path_factory.mktemp("vs_hf") / "rows.json"
    rows = vs_hf.main(["--quick", "--threads", "1", "--json", str(out)])
    assert REPORT.read_text() == before  # a quick run never rewrites the published table
    return rows, out


def test_quick_run_covers_every_group_with_equal_parameters(
    quick: tuple[list[vs_hf.Row], Path],
) -> None:
    rows, _ = quick
    assert [r.group for r in rows] == GROUPS
    for row in rows:
        assert row.omnifuse_params > 0
        assert abs(row.omnifuse_params - row.hf_params) <= 0.01 * row.hf_params, row.group
        assert len(row.rates["omnifuse"]) == len(row.rates["hf"]) == 2  # --quick: 2 rounds
        assert all(r > 0 for side in row.rates.values() for r in side)
        assert len(row.gemm_gflops) == len(row.others_cpu) == 2
        assert all(0.0 <= share <= 1.0 for share in row.others_cpu)
        assert row.ratio == pytest.approx(row.median("omnifuse") / row.median("hf"))


def test_analytic_flops_match_the_flop_counter(quick: tuple[list[vs_hf.Row], Path]) -> None:
    rows, _ = quick
    for row in rows:
        omnifuse, hf = row.counted_gflop["omnifuse"], row.counted_gflop["hf"]
        # The analytic count is the work both sides must do; it leaves out norms, softmax,
        # biases, the loss and input gradients nothing needs: within 15 %.
        assert row.analytic_gflop == pytest.approx(omnifuse, rel=0.15), row.group
        if row.group.startswith("ASR"):
            assert hf > 2 * omnifuse  # the 30-s window: most of HF's work is padding
        else:
            assert row.analytic_gflop == pytest.approx(hf, rel=0.15), row.group


def test_table_and_json_structure(quick: tuple[list[vs_hf.Row], Path]) -> None:
    rows, out = quick
    lines = vs_hf.table(rows)
    assert len(lines) == 2 + len(rows)
    columns = {line.count("|") for line in lines}
    assert columns == {12}  # 11 columns, every row as wide as the header
    assert all("**" in line and "x**" in line for line in lines[2:])  # the ratio column
    saved = json.loads(out.read_text())
    assert [r["group"] for r in saved] == GROUPS
    assert all(r["ratio"] > 0 and set(r["rates"]) == {"omnifuse", "hf"} for r in saved)


def test_check_params_rejects_shapes_more_than_one_percent_apart() -> None:
    vs_hf.check_params("same", 1000, 1009)
    with pytest.raises(ValueError, match=r"mismatch: omnifuse has 1,000 parameters.*2\.0% apart"):
        vs_hf.check_params("mismatch", 1000, 1020)
