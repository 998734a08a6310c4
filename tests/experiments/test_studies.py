"""Studies: a quick study trains its variants, evaluates every test condition, writes JSON and a
plot; the docs table has one row per variant."""

from __future__ import annotations

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from omnifuse.cli.main import app
from omnifuse_experiments.studies import STUDIES, markdown, run_study


def test_quick_robustness_study_end_to_end(tmp_path: Path) -> None:
    docs = tmp_path / "docs" / "results.md"
    summary = run_study("robustness", tmp_path, quick=True, results_file=docs, progress=False)
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["results"] == summary["results"]
    assert set(summary["results"]) == {"no modality dropout", "modality dropout 0.3"}
    for tests in summary["results"].values():
        assert set(tests) == {"image+text", "image only", "text only"}
        for scores in tests.values():
            assert 0.0 <= scores["colour/accuracy"] <= 1.0
    assert (tmp_path / "robustness.png").stat().st_size > 1000
    # A quick run never writes into the results file it was given, only into its own out dir.
    assert not docs.exists()
    assert "<!-- begin:study-robustness -->" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "images" / "study-robustness.png").is_file()
    table = markdown("robustness", STUDIES["robustness"], summary)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "run" not in line]
    assert len(rows) == 2 and all(not math.isnan(float(r.split("|")[2])) for r in rows)


def test_every_study_names_metrics_of_its_tasks() -> None:
    for study in STUDIES.values():
        trained = {task for v in study.variants for task in v.tasks}
        assert {task for task, _ in study.metrics} <= trained


def test_unknown_study_exits_2() -> None:
    result = CliRunner().invoke(app, ["study", "nope"])
    assert result.exit_code == 2
    assert "valid choices: fusion, multitask, robustness" in result.output


def test_study_help_lists_every_study() -> None:
    result = CliRunner().invoke(app, ["study", "--help"])
    assert result.exit_code == 0 and all(name in result.output for name in STUDIES)
