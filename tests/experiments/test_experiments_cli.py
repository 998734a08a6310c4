"""The experiments' commands, mounted on ``omnifuse`` as plugins: user errors and options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omnifuse.cli.main import app
from omnifuse_experiments import cli


def test_unknown_recipe_exits_2_with_the_choices() -> None:
    result = CliRunner().invoke(app, ["recipe", "nope"])
    assert result.exit_code == 2
    assert "unknown recipe 'nope'; valid choices: fortunes, emoji, speech" in result.output


def test_recipe_passes_results_file_and_defaults_inside_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run_recipe(name: str, out_dir: Path, quick: bool = False, **options: Any) -> Any:
        calls.append({"out": out_dir, **options})
        return {"name": name}

    monkeypatch.setattr(cli, "run_recipe", fake_run_recipe)
    docs = tmp_path / "results.md"
    runner = CliRunner()
    args = ["recipe", "fortunes", "--out", str(tmp_path)]
    ok = runner.invoke(app, [*args, "--results-file", str(docs)])
    assert ok.exit_code == 0, ok.output
    assert calls[-1]["results_file"] == docs and calls[-1]["out"] == tmp_path
    assert runner.invoke(app, args).exit_code == 0
    assert calls[-1]["results_file"] is None  # the recipe then writes OUT/results.md


def test_demo_passes_threads_and_defaults_to_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnifuse_experiments import demo

    calls: list[dict[str, Any]] = []

    def fake_run_demo(out_dir: Path, quick: bool = False, threads: int = 1) -> dict[str, Any]:
        calls.append({"out": out_dir, "quick": quick, "threads": threads})
        return {"report": "r"}

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path)]).exit_code == 0
    assert calls[-1] == {"out": tmp_path, "quick": True, "threads": 1}
    assert runner.invoke(app, ["demo", "--threads", "2", "--out", str(tmp_path)]).exit_code == 0
    assert calls[-1]["threads"] == 2
    bad = runner.invoke(app, ["demo", "--threads", "0", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and not calls[2:]
