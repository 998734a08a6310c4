"""``omnifuse recipe``: the command's user errors."""

from __future__ import annotations

from typer.testing import CliRunner

from omnifuse.cli.main import app


def test_unknown_recipe_exits_2_with_the_choices() -> None:
    result = CliRunner().invoke(app, ["recipe", "nope"])
    assert result.exit_code == 2
    assert "unknown recipe 'nope'; valid choices: fortunes, emoji, speech" in result.output
